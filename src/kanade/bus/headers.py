"""NATS message headers parsed in one regular-expression test per header, not one Python
call per character.

nats-py parses the header block of every message it receives before any subscriber sees
it, and its parser tests each character of every header name with ``str.isspace`` in a
generator. Every result and EventStarted carries a ``Nats-Msg-Id`` (the stream's
duplicate window, SPEC §4.2), so on a backend draining a backlog that one line was a
sixth of all the Python the process ran: more than validating the messages
(docs/performance.md, "Session 10: header parsing and COPY").

:func:`parse_header_lines` returns exactly what nats-py's own parser returns for every
input (``tests/unit/bus/test_headers.py`` checks that on arbitrary bytes against the
installed nats-py), and :class:`Client` is nats-py's client using it.
"""

from __future__ import annotations

import re
from typing import Final

from nats.aio.client import Client as _NatsClient

# The ASCII characters ``str.isspace`` calls whitespace: TAB, LF, VT, FF, CR, the four
# information separators (0x1C-0x1F) and SPACE. A name holding one is skipped, as nats-py
# skips it (a header name is an RFC 5322 token).
_SPACE_IN_NAME: Final = re.compile(rb"[\t-\r\x1c- ]")
_CRLF: Final = b"\r\n"


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """``Name: Value`` lines (CRLF-separated) as a dict; a line without a colon, a name
    that is not ASCII or holds whitespace is skipped; values are decoded as UTF-8 with
    U+FFFD for malformed bytes; a repeated name keeps its last value."""
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip()
        if not name.isascii() or _SPACE_IN_NAME.search(name):
            continue
        out[name.decode("ascii")] = value.strip().decode("utf-8", "replace")
    return out


class Client(_NatsClient):
    """nats-py's client, parsing headers with :func:`parse_header_lines`."""

    _parse_header_lines = staticmethod(parse_header_lines)

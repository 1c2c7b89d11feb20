"""kanade.bus.headers parses header blocks exactly as the installed nats-py does, on any
bytes (so the faster parser changes nothing a subscriber sees), and kanade's connections
use it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from kanade.bus import headers
from kanade.bus.headers import parse_header_lines

# Bytes that matter to the parser, so that random blocks hit every branch: separators,
# colons, ASCII whitespace (including the information separators 0x1C-0x1F that
# str.isspace counts), non-ASCII and malformed UTF-8.
_INTERESTING = st.sampled_from(
    [b"\r\n", b"\r", b"\n", b":", b": ", b" ", b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x1f",
     b"\x1b", b"Nats-Msg-Id", b"K", b"v", b"\xc3\xa9", b"\xff", b"\xe2\x80", b"\x00"]
)  # fmt: skip
_BLOCKS = st.one_of(
    st.binary(max_size=200),
    st.lists(_INTERESTING, max_size=40).map(b"".join),
)


@settings(max_examples=2000)
@given(_BLOCKS)
def test_it_parses_every_block_as_nats_py_does(raw: bytes) -> None:
    assert parse_header_lines(raw) == NatsClient._parse_header_lines(raw)


def test_the_cases_that_decide_a_name() -> None:
    raw = (
        b"Nats-Msg-Id: r1:result\r\n"
        b" Padded :  kept \r\n"
        b"Bad Name: skipped\r\n"
        b"Sep\x1cName: skipped\r\n"
        b"N\xc3\xa9: skipped\r\n"
        b"no colon here\r\n"
        b"Empty:\r\n"
        b"Value: caf\xc3\xa9 \xff\r\n"
        b"Nats-Msg-Id: r2:result\r\n"
    )
    assert parse_header_lines(raw) == {
        "Nats-Msg-Id": "r2:result",  # the last of a repeated name
        "Padded": "kept",
        "Empty": "",
        "Value": "café \ufffd",
    }
    assert parse_header_lines(raw) == NatsClient._parse_header_lines(raw)


def test_kanades_client_is_nats_pys_with_this_parser() -> None:
    client = headers.Client()
    assert isinstance(client, NatsClient)
    assert client._parse_header_lines is parse_header_lines

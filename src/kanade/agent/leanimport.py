"""Import nats-py and pydantic without ``importlib.metadata`` (agent process only).

Both libraries reach for ``importlib.metadata`` at import time, and it drags in zipfile,
shutil, lzma, bz2, csv, tempfile and importlib.resources, then scans every installed
distribution's entry points: about 2 MB of resident memory in every agent of the fleet,
whose idle RSS budget is 40 MB (SPEC §10.2). What they want from it:

* nats-py: its own version, a string it only sends to the broker as information (the
  CONNECT ``version`` field) — answered from its ``nats_py-<version>.dist-info`` name;
* pydantic: third-party plugins (the ``pydantic`` entry-point group) — none, in the
  agent: nothing that is not kanade's own code runs inside it.

:func:`import_lean` imports both with a stand-in ``importlib.metadata`` that answers just
those two look-ups, visible only while they import. ``kanade-agent`` calls it first thing.

Likewise nats-py's JetStream client builds an ``email.parser.BytesParser`` (about 1 MB of
modules) that only its non-direct ``get_msg`` uses — which the agent calls for every signed
KV document it reads (the signature is a header, SPEC §8.2). It gets a parser of NATS
header lines instead: the one kanade's client uses for every message (``kanade.bus.headers``;
NATS headers are not e-mail headers: no folding, no encoded words).
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator
from importlib.machinery import PathFinder
from typing import Any

__all__ = ["import_lean", "installed_nats_version"]

_NATS_DIST = "nats-py"
_DIST_PREFIX = "nats_py-"
_DIST_SUFFIX = ".dist-info"
_UNKNOWN = "0.0.0"  # what nats-py reports itself when the look-up fails


def installed_nats_version() -> str:
    """nats-py's version from the name of its dist-info directory (no metadata parsing)."""
    spec = PathFinder.find_spec("nats")
    if spec is None or not spec.origin:
        return _UNKNOWN
    site = os.path.dirname(os.path.dirname(spec.origin))
    with contextlib.suppress(OSError):
        for name in os.listdir(site):
            if name.startswith(_DIST_PREFIX) and name.endswith(_DIST_SUFFIX):
                return name[len(_DIST_PREFIX) : -len(_DIST_SUFFIX)]
    return _UNKNOWN


class _NatsHeaderParser:
    """Stands in for ``email.parser.BytesParser`` in nats-py's JetStream manager."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    @staticmethod
    def parsebytes(data: bytes, headersonly: bool = False) -> dict[str, str]:
        from kanade.bus.headers import parse_header_lines

        return parse_header_lines(data)


@contextlib.contextmanager
def _stand_in(name: str, **attributes: Any) -> Iterator[None]:
    """``sys.modules[name]`` is a module with just ``attributes`` while the block runs."""
    module = types.ModuleType(name)
    for attr, value in attributes.items():
        setattr(module, attr, value)
    sys.modules[name] = module
    try:
        yield
    finally:
        if sys.modules.get(name) is module:
            del sys.modules[name]


@contextlib.contextmanager
def _stand_in_metadata() -> Iterator[None]:
    nats_version = installed_nats_version()

    def version(distribution: str) -> str:
        if distribution != _NATS_DIST:
            raise LookupError(distribution)
        return nats_version

    def entry_points(**_selection: object) -> tuple[()]:
        return ()

    with _stand_in("importlib.metadata", version=version, entry_points=entry_points):
        yield


def import_lean() -> None:
    """Import nats-py's client and pydantic's plugin loader with the stand-in in place.

    A no-op when ``importlib.metadata`` or either library is already imported (then
    there is nothing left to save, and nothing is changed for code that uses them).
    """
    if any(
        m in sys.modules for m in ("importlib.metadata", "nats.aio.client", "pydantic.plugin")
    ):
        return
    lazy_email = "email.parser" not in sys.modules
    with (
        _stand_in_metadata(),
        _stand_in("email.parser", BytesParser=_NatsHeaderParser)
        if lazy_email
        else contextlib.nullcontext(),
    ):
        import nats.aio.client  # noqa: F401 - imported for its place in sys.modules
        import pydantic.plugin._loader  # noqa: F401 - binds the stand-in's entry_points

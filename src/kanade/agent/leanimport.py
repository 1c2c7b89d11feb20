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
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator
from importlib.machinery import PathFinder

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


@contextlib.contextmanager
def _stand_in_metadata() -> Iterator[None]:
    nats_version = installed_nats_version()
    stand_in = types.ModuleType("importlib.metadata")

    def version(distribution: str) -> str:
        if distribution != _NATS_DIST:
            raise LookupError(distribution)
        return nats_version

    def entry_points(**_selection: object) -> tuple[()]:
        return ()

    stand_in.version = version  # type: ignore[attr-defined]
    stand_in.entry_points = entry_points  # type: ignore[attr-defined]
    sys.modules["importlib.metadata"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]


def import_lean() -> None:
    """Import nats-py's client and pydantic's plugin loader with the stand-in in place.

    A no-op when ``importlib.metadata`` or either library is already imported (then
    there is nothing left to save, and nothing is changed for code that uses them).
    """
    if any(
        m in sys.modules for m in ("importlib.metadata", "nats.aio.client", "pydantic.plugin")
    ):
        return
    with _stand_in_metadata():
        import nats.aio.client  # noqa: F401 - imported for its place in sys.modules
        import pydantic.plugin._loader  # noqa: F401 - binds the stand-in's entry_points

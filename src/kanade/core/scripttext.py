"""What an exec runs, as its record keeps it: the script's sha256, its shell, and an inline
script's text — bounded, so one huge script cannot bloat every row that names it.

The text is kept so that operators and approvers can read what ran or what they approve
(docs/dashboard.md, "Script text"); a script object's text stays in the object store and
is read from there by name, checked against the sha256 pinned at dispatch.
"""

from __future__ import annotations

from typing import Final

from kanade.core.bounds import MAX_SCRIPT_TEXT_BYTES
from kanade.core.digests import sha256_hex
from kanade.core.models.job import Execute
from kanade.core.models.records import ExecScript

SCRIPT_TEXT_MAX: Final = MAX_SCRIPT_TEXT_BYTES
"""Bytes of script text kept per script (UTF-8); a longer one is cut and says so."""


def bounded_text(text: str, limit: int = SCRIPT_TEXT_MAX) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` UTF-8 bytes (never inside a character), and
    whether it was cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode(errors="ignore"), True


def exec_script(execute: Execute, object_sha256: str | None = None) -> ExecScript:
    """The script part of an exec record, from the job's ``execute`` (as dispatched) and,
    for a script object, the sha256 pinned for it."""
    if execute.script is not None:
        raw = execute.script.encode()
        text, cut = bounded_text(execute.script)
        return ExecScript(
            sha256=sha256_hex(raw), shell=execute.shell, text=text, truncated=cut, size=len(raw)
        )
    return ExecScript(sha256=object_sha256 or "", shell=execute.shell, object=execute.script_object)

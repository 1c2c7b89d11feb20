"""Reading inventory facts and check statuses out of a result's stdout (SPEC §2.1). Pure.

The job's hints say how: an ``inventory`` job prints one JSON object, stored as the
pc's facts for that job, but only when it exited 0 (a failed collector's output is
not facts). A ``check`` job prints ``{status, detail}`` (field names configurable);
anything that is not a clear ``ok|warn|fail|unknown`` becomes ``unknown`` with a
detail saying why, so a broken check shows up in the compliance view instead of
silently keeping its last good status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from kanade.core.bounds import loads as json_loads

CheckStatus = Literal["ok", "warn", "fail", "unknown"]
CHECK_STATUSES: Final[tuple[CheckStatus, ...]] = ("ok", "warn", "fail", "unknown")

# Details are for people, not payloads: keep rows small whatever a script prints.
MAX_DETAIL_CHARS: Final = 2000


MAX_FACT_DEPTH: Final = 32
"""Nesting of an inventory's facts: deeper is not facts a person reads, and a value nested
near the interpreter's recursion limit would fail again when the row is written."""


def _depth_within(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _one_json_object(stdout: str) -> dict[str, Any] | None:
    text = stdout.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json_loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not _depth_within(value, MAX_FACT_DEPTH):
        return None
    return value


def inventory_facts(*, exit_code: int | None, skipped: bool, stdout: str) -> dict[str, Any] | None:
    """The facts an inventory result carries, or None when it carries none."""
    if skipped or exit_code != 0:
        return None
    return _one_json_object(stdout)


@dataclass(frozen=True)
class CheckOutcome:
    status: CheckStatus
    detail: str


def _detail(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_DETAIL_CHARS]


def _as_status(value: Any) -> CheckStatus | None:
    if not isinstance(value, str):
        return None
    lowered = value.strip().lower()
    for status in CHECK_STATUSES:
        if lowered == status:
            return status
    return None


def check_outcome(
    *,
    exit_code: int | None,
    skipped: bool,
    stdout: str,
    status_field: str = "status",
    detail_field: str = "detail",
) -> CheckOutcome | None:
    """The check status a result reports; None for a skipped result (the check did not
    run, e.g. revoked: that says nothing about the machine, so the last status stays)."""
    if skipped:
        return None
    obj = _one_json_object(stdout)
    if obj is not None:
        status = _as_status(obj.get(status_field))
        detail = obj.get(detail_field, "")
        if status is None:
            return CheckOutcome(
                "unknown",
                _detail(f"{status_field}: {obj.get(status_field)!r} is not ok|warn|fail|unknown"),
            )
        return CheckOutcome(status, _detail(detail if detail is not None else ""))
    # Plain text is accepted too: the first word is the status, the rest the detail.
    word, _, rest = stdout.strip().partition(" ")
    status = _as_status(word.split("\n", 1)[0])
    if status is not None:
        return CheckOutcome(status, _detail(rest.strip()))
    why = f"exit {exit_code}; " if exit_code not in (0, None) else ""
    return CheckOutcome("unknown", _detail(f"{why}stdout is not a check report"))

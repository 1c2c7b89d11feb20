"""The agent's last-success ledger (SPEC §3.6) as text: pure encode/decode.

The agent persists ``{schedule_id: last success instant}`` with an atomic write + rename;
this module only turns the mapping into text and back. A corrupt or unreadable document
decodes to an empty ledger plus a warning (the agent starts empty and says so); single bad
entries are dropped with a warning, the rest kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from kanade.core.bounds import loads as json_loads
from kanade.core.instants import format_instant, parse_instant, to_utc

LEDGER_VERSION: Final = 1


def encode_successes(successes: Mapping[str, datetime]) -> str:
    body = {key: format_instant(to_utc(when)) for key, when in sorted(successes.items())}
    return json.dumps({"version": LEDGER_VERSION, "successes": body}, indent=1, sort_keys=True)


def decode_successes(text: str | bytes) -> tuple[dict[str, datetime], list[str]]:
    """``(ledger, warnings)``; never raises."""
    try:
        data: Any = json_loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, [f"last-success ledger is corrupt ({exc}); starting empty"]
    if not isinstance(data, dict) or not isinstance(data.get("successes"), dict):
        return {}, ["last-success ledger has an unexpected shape; starting empty"]
    out: dict[str, datetime] = {}
    warnings: list[str] = []
    for key, value in data["successes"].items():
        try:
            out[str(key)] = parse_instant(value)
        except ValueError:
            warnings.append(f"last-success ledger: dropped bad entry {key!r}")
    return out, warnings

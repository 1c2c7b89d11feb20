"""Layered agent configuration (SPEC §3.7), one rule for backend and agent.

Layers, later wins: built-in defaults → ``global`` → each group the agent is in
(sorted by name) → the pc itself. Two groups setting the same key to different
values is a conflict: the later group (by name) wins and a warning says so.
Stored in KV bucket ``kanade_config`` under keys ``global``, ``group.<g>``,
``pc.<pc_id>``; each value is a JSON object of settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kanade.core.bounds import MAX_INLINE_OUTPUT_BYTES, MAX_NAME_CHARS, MAX_TIMEOUT_S, finite_in
from kanade.core.duration_text import parse_duration

LOG_LEVELS = ("debug", "info", "warning", "error")

DEFAULTS: dict[str, Any] = {
    "heartbeat_interval": 30.0,
    "max_local_concurrent": 4,
    "log_level": "info",
    "max_output_bytes": 256 * 1024,
    "target_version": None,
    "target_version_jitter": 0.0,
    # Live output (SPEC §4.12): what one agent publishes while someone watches an exec.
    "live_output_bytes_per_s": 16 * 1024,
    "live_output_msgs_per_s": 10.0,
}


# Every setting is bounded (kanade.core.bounds): a NaN or a 1e308 written by the API must not
# become an agent's sleep, nor ten thousand concurrent scripts.
HEARTBEAT_RANGE: Final = (0.1, 86_400.0)
MAX_LOCAL_CONCURRENT: Final = 1024
MAX_TARGET_VERSION_JITTER_S: Final = MAX_TIMEOUT_S
MAX_LIVE_BYTES_PER_S: Final = 1024 * 1024
MAX_LIVE_MSGS_PER_S: Final = 100.0


DURATION_KEYS = frozenset({"heartbeat_interval", "target_version_jitter"})
"""Settings in seconds: a writer also takes them in the duration grammar (``30s``, ``1m``)."""


def from_text(key: str, value: Any) -> Any:
    """A writer's value with a duration (``"30s"``) turned into the seconds every layer
    stores; anything else unchanged (validated by :func:`validate_setting`)."""
    if key not in DURATION_KEYS or not isinstance(value, str):
        return value
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _number_in(key: str, value: Any, low: float, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not finite_in(float(value), low, high)
    ):
        raise ValueError(f"{key}: must be a number of seconds in {low:g}..{high:g}, got {value!r}")
    return float(value)


def _int_in(key: str, value: Any, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{key}: must be an integer in 1..{high}, got {value!r}")
    return value


def validate_setting(key: str, value: Any) -> Any:
    """The normalised value of one setting, or ValueError naming the key and the reason."""
    if key == "heartbeat_interval":
        return _number_in(key, value, *HEARTBEAT_RANGE)
    if key == "max_local_concurrent":
        return _int_in(key, value, MAX_LOCAL_CONCURRENT)
    if key == "max_output_bytes":
        return _int_in(key, value, MAX_INLINE_OUTPUT_BYTES)
    if key == "log_level":
        if value not in LOG_LEVELS:
            raise ValueError(f"{key}: must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value
    if key == "target_version":
        if value is not None and (
            not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS
        ):
            raise ValueError(
                f"{key}: must be a version string of at most {MAX_NAME_CHARS} characters, "
                f"got {value!r:.60}"
            )
        return value
    if key == "live_output_bytes_per_s":
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value <= MAX_LIVE_BYTES_PER_S
        ):
            raise ValueError(
                f"{key}: must be an integer from 0 (no live output) to "
                f"{MAX_LIVE_BYTES_PER_S}, got {value!r}"
            )
        return value
    if key == "live_output_msgs_per_s":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value <= MAX_LIVE_MSGS_PER_S
        ):
            raise ValueError(
                f"{key}: must be a number > 0 and <= {MAX_LIVE_MSGS_PER_S:g}, got {value!r}"
            )
        return float(value)
    if key == "target_version_jitter":
        return _number_in(key, value, 0.0, MAX_TARGET_VERSION_JITTER_S)
    raise ValueError(f"{key}: unknown setting (known: {', '.join(sorted(DEFAULTS))})")


def layer_key(scope: str, name: str | None = None) -> str:
    """KV key of a layer: ``global``, ``group.<g>`` or ``pc.<pc_id>``."""
    if scope == "global":
        return "global"
    if scope not in ("group", "pc") or not name:
        raise ValueError("scope must be global, group <name> or pc <id>")
    return f"{scope}.{name}"


@dataclass
class Effective:
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)  # key -> layer that set it
    warnings: list[str] = field(default_factory=list)


def effective_config(
    layers: Mapping[str, Mapping[str, Any]],
    *,
    pc_id: str,
    groups: list[str],
    local: Mapping[str, Any] | None = None,
) -> Effective:
    """Merge the layers that apply to ``pc_id`` in ``groups``.

    ``local`` is what the agent was started with (flags, config file): it sits
    between the built-in defaults and the KV layers, so a fleet-wide setting
    overrides it but an unset one does not silently reset it to the default.

    Invalid or unknown values in a layer are skipped with a warning instead of
    failing: one bad key written by an older CLI must not stop the fleet.
    """
    out = Effective(dict(DEFAULTS), {k: "default" for k in DEFAULTS})
    for key, raw in (local or {}).items():
        try:
            out.values[key] = validate_setting(key, raw)
            out.sources[key] = "local"
        except ValueError as exc:
            out.warnings.append(f"local: ignored {exc}")
    order = ["global", *(f"group.{g}" for g in sorted(set(groups))), f"pc.{pc_id}"]
    group_set: dict[str, tuple[str, Any]] = {}
    for name in order:
        layer = layers.get(name)
        if not layer:
            continue
        for key, raw in layer.items():
            try:
                value = validate_setting(key, raw)
            except ValueError as exc:
                out.warnings.append(f"{name}: ignored {exc}")
                continue
            if name.startswith("group."):
                earlier = group_set.get(key)
                if earlier is not None and earlier[1] != value:
                    out.warnings.append(
                        f"{key}: {earlier[0]} sets {earlier[1]!r}, {name} sets {value!r}; "
                        f"{name} wins"
                    )
                group_set[key] = (name, value)
            out.values[key] = value
            out.sources[key] = name
    return out

"""The ``--wave`` grammar of ``kanade exec``: waves as typed on the command line → the
``rollout`` of an exec body."""

from __future__ import annotations

from typing import Any

from kanade.cli.client import CliError

WAVE_HELP = (
    "A rollout wave (repeatable, in order): 10% (of the pcs still remaining), rest, "
    "group:NAME or pcs:A,B. Append @DELAY for this wave's own delay (40%@10m)."
)
WAVE_GRAMMAR = "use 10%, rest, group:NAME or pcs:A,B, optionally followed by @DELAY"


def _delay_text(text: str, what: str) -> str:
    from kanade.core.duration_text import parse_duration

    try:
        parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{what}: {exc}") from None
    return text


def parse_wave(text: str, default_delay: str) -> dict[str, Any]:
    """``10%``, ``rest``, ``group:web``, ``pcs:a,b``, each optionally ``@DELAY``."""
    spec, _, delay = text.strip().partition("@")
    spec = spec.strip()
    wave: dict[str, Any]
    if spec.lower() == "rest":
        wave = {"percent": 100}
    elif spec.endswith("%"):
        try:
            value = float(spec[:-1])
        except ValueError:
            raise CliError(
                f"--wave {text!r}: {spec[:-1]!r} is not a number; {WAVE_GRAMMAR}"
            ) from None
        if not 0 < value <= 100:
            raise CliError(f"--wave {text!r}: a percentage must be in (0, 100]")
        wave = {"percent": int(value) if value.is_integer() else value}
    elif spec.startswith("group:") and spec[6:]:
        wave = {"group": spec[6:]}
    elif spec.startswith("pcs:") and spec[4:]:
        wave = {"pcs": [p.strip() for p in spec[4:].split(",") if p.strip()]}
    else:
        raise CliError(f"--wave {text!r}: {WAVE_GRAMMAR}")
    wave["delay"] = _delay_text(delay.strip(), f"--wave {text!r}") if delay else default_delay
    return wave


def rollout_body(
    waves: list[str] | None, wave_delay: str | None, halt_on_failure_rate: float | None
) -> dict[str, Any] | None:
    """The ``rollout`` of an exec body, or None without ``--wave``. ``--wave-delay`` is
    the delay before every wave but the first (which starts at once)."""
    if not waves:
        if wave_delay is not None or halt_on_failure_rate is not None:
            raise CliError("--wave-delay and --halt-on-failure-rate need at least one --wave")
        return None
    delay = _delay_text(wave_delay, "--wave-delay") if wave_delay else "0s"
    parsed = [parse_wave(w, "0s" if i == 0 else delay) for i, w in enumerate(waves)]
    body: dict[str, Any] = {"waves": parsed}
    if halt_on_failure_rate is not None:
        if not 0 <= halt_on_failure_rate <= 1:
            raise CliError("--halt-on-failure-rate must be between 0 and 1 (0.2 = 20 %)")
        body["halt_on_failure_rate"] = halt_on_failure_rate
    return body

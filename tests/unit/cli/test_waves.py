"""The ``--wave`` grammar of ``kanade exec``."""

from __future__ import annotations

import pytest

from kanade.cli.client import CliError
from kanade.cli.waves import parse_wave, rollout_body


@pytest.mark.parametrize(
    ("text", "wave"),
    [
        ("10%", {"percent": 10, "delay": "0s"}),
        ("12.5%", {"percent": 12.5, "delay": "0s"}),
        ("rest", {"percent": 100, "delay": "0s"}),
        ("REST", {"percent": 100, "delay": "0s"}),
        ("group:web", {"group": "web", "delay": "0s"}),
        ("pcs:a, b,", {"pcs": ["a", "b"], "delay": "0s"}),
        ("40%@10m", {"percent": 40, "delay": "10m"}),
    ],
)
def test_parse_wave_accepts_each_shape(text: str, wave: dict[str, object]) -> None:
    assert parse_wave(text, "0s") == wave


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x%", "'x' is not a number"),
        ("0%", "a percentage must be in (0, 100]"),
        ("101%", "a percentage must be in (0, 100]"),
        ("group:", "use 10%, rest, group:NAME or pcs:A,B"),
        ("half", "use 10%, rest, group:NAME or pcs:A,B"),
        ("10%@soon", "--wave '10%@soon'"),
    ],
)
def test_parse_wave_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CliError) as caught:
        parse_wave(text, "0s")
    assert message in caught.value.message


def test_the_first_wave_starts_at_once_and_later_ones_wait_the_wave_delay() -> None:
    body = rollout_body(["10%", "40%@1h", "rest"], "5m", 0.2)
    assert body == {
        "waves": [
            {"percent": 10, "delay": "0s"},
            {"percent": 40, "delay": "1h"},
            {"percent": 100, "delay": "5m"},
        ],
        "halt_on_failure_rate": 0.2,
    }


def test_no_wave_means_no_rollout_and_rollout_options_need_a_wave() -> None:
    assert rollout_body(None, None, None) is None
    with pytest.raises(CliError, match="need at least one --wave"):
        rollout_body([], "5m", None)
    with pytest.raises(CliError, match="need at least one --wave"):
        rollout_body(None, None, 0.5)


def test_rollout_body_rejects_a_bad_delay_or_failure_rate() -> None:
    with pytest.raises(CliError, match="--wave-delay"):
        rollout_body(["rest"], "later", None)
    with pytest.raises(CliError, match="between 0 and 1"):
        rollout_body(["rest"], None, 1.5)

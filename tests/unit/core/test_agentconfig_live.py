"""The live-output cap as agent config (kanade.core.agentconfig): bounded both ways, 0 bytes/s
turns live output off, and a bad value names its key."""

from __future__ import annotations

import pytest

from kanade.core.agentconfig import (
    DEFAULTS,
    MAX_LIVE_BYTES_PER_S,
    MAX_LIVE_MSGS_PER_S,
    effective_config,
    validate_setting,
)


def test_the_defaults_are_valid_and_layers_override_them() -> None:
    for key in ("live_output_bytes_per_s", "live_output_msgs_per_s"):
        assert validate_setting(key, DEFAULTS[key]) == DEFAULTS[key]
    eff = effective_config(
        {"global": {"live_output_bytes_per_s": 0}, "pc.pc-1": {"live_output_msgs_per_s": 2}},
        pc_id="pc-1",
        groups=[],
    )
    assert eff.values["live_output_bytes_per_s"] == 0  # off
    assert eff.values["live_output_msgs_per_s"] == 2.0
    assert eff.sources["live_output_msgs_per_s"] == "pc.pc-1"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("live_output_bytes_per_s", -1),
        ("live_output_bytes_per_s", MAX_LIVE_BYTES_PER_S + 1),
        ("live_output_bytes_per_s", 1.5),
        ("live_output_bytes_per_s", True),
        ("live_output_bytes_per_s", "16k"),
        ("live_output_msgs_per_s", 0),
        ("live_output_msgs_per_s", MAX_LIVE_MSGS_PER_S + 1),
        ("live_output_msgs_per_s", None),
    ],
)
def test_out_of_bounds_values_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{key}: must be"):
        validate_setting(key, value)

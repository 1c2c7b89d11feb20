"""Agent settings: the reconcile poll of local per_pc / per_target schedules is a setting
(default a minute) within bounds, from the config file or a flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanade.agent.settings import AgentSettings, load_settings


def test_the_reconcile_poll_defaults_to_a_minute_and_is_read_from_the_config(
    tmp_path: Path,
) -> None:
    assert AgentSettings(pc_id="pc-1").reconcile_poll == 60.0
    config = tmp_path / "agent.yaml"
    config.write_text("pc_id: pc-1\nreconcile_poll: 5\n")
    assert load_settings(config, {}).reconcile_poll == 5.0
    assert load_settings(config, {"reconcile_poll": 2.0}).reconcile_poll == 2.0  # the flag


@pytest.mark.parametrize("seconds", [0.0, 0.5, 3601.0, float("nan"), float("inf")])
def test_a_reconcile_poll_out_of_bounds_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"reconcile_poll must be in 1\.\.3600 seconds"):
        AgentSettings(pc_id="pc-1", reconcile_poll=seconds).validate()

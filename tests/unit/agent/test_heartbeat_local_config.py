"""The agent's own settings and ``--group`` flags in its heartbeat (SPEC §3.7, §5): what it
was started with, so ``config effective`` shows what it really applies and ``group rm``
can say a flag group stays — bounded by the writer and by every reader."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kanade.agent.heartbeat import Heartbeats, local_settings
from kanade.core.models.wire import MAX_LOCAL_SETTINGS, Heartbeat, WireDecodeError, decode, encode

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def beats(**kw: object) -> Heartbeats:
    return Heartbeats(pc_id="pc-1", interval=5.0, connection=lambda: None, groups=lambda: ["web"],
                      last_command_at=lambda: None, load=lambda: (0, 0),
                      schedule_set_version=lambda: None, clock=lambda: NOW,
                      **kw)  # type: ignore[arg-type]  # fmt: skip


def test_only_settings_that_differ_from_the_defaults_are_sent() -> None:
    started = {"heartbeat_interval": 5.0, "max_local_concurrent": 4, "log_level": "info",
               "max_output_bytes": 262144}  # fmt: skip
    hb = decode(Heartbeat, encode(beats(local_config=started, static_groups=["web"]).build()))
    assert hb.local_config == {"heartbeat_interval": 5.0}
    assert hb.static_groups == ["web"]
    plain = beats(local_config={"heartbeat_interval": 30.0}).build()
    assert plain.local_config is None and plain.static_groups is None  # nothing to say


def test_the_writer_bounds_what_it_sends() -> None:
    many = {f"k{i:02d}": i + 1 for i in range(40)} | {"weird": [1], "long": "x" * 100}
    sent = local_settings(many)
    assert len(sent) == MAX_LOCAL_SETTINGS and "weird" not in sent and "long" not in sent
    decode(Heartbeat, encode(beats(local_config=many).build()))  # within the reader's bounds


@pytest.mark.parametrize(
    "value",
    [{f"k{i}": 1 for i in range(MAX_LOCAL_SETTINGS + 1)}, {"k": "x" * 129}, {"k": [1]}],
)
def test_the_reader_refuses_values_out_of_bounds(value: object) -> None:
    raw = json.loads(encode(beats().build()))
    raw["local_config"] = value
    with pytest.raises(WireDecodeError, match="local_config"):
        decode(Heartbeat, json.dumps(raw).encode())

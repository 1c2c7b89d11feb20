"""Request bodies. Strict (unknown fields are 400 errors): these are writers."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kanade.core.durations import Duration
from kanade.core.models.schedule import Rollout, Wave
from kanade.core.models.target import Target
from kanade.core.models.wire import Shell


class StrictTarget(Target):
    """A target as a writer sends it: the core model, with unknown fields rejected."""

    model_config = ConfigDict(extra="forbid")


class StrictWave(Wave):
    model_config = ConfigDict(extra="forbid")


class StrictRollout(Rollout):
    """SPEC §4.7: waves of a group, a pc list or a percentage of the remaining target."""

    model_config = ConfigDict(extra="forbid")
    waves: list[StrictWave] = Field(min_length=1)  # type: ignore[assignment]


class ExecBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: StrictTarget
    rollout: StrictRollout | None = Field(
        default=None,
        description="send in waves, e.g. {waves: [{percent: 10}, {percent: 100, delay: 5m}], "
        "halt_on_failure_rate: 0.2}",
    )
    urgent: bool = Field(
        default=False, description="bypass the agents' max_local_concurrent queue (admin only)"
    )
    jitter: Duration | None = Field(
        default=None, description="random delay before the script starts, e.g. 5s"
    )
    starting_deadline: Duration | None = Field(
        default=None, description="skip (exit 125) if the script cannot start within this"
    )


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    script: str = Field(min_length=1)
    shell: Shell = "sh"
    timeout: Duration = timedelta(seconds=60)
    target: StrictTarget
    env: dict[str, str] | None = None
    cwd: str | None = Field(default=None, min_length=1)

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return v

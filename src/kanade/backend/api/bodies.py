"""Request bodies. Strict (unknown fields are 400 errors): these are writers."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kanade.core.durations import Duration
from kanade.core.models.target import Target
from kanade.core.models.wire import Shell


class StrictTarget(Target):
    """A target as a writer sends it: the core model, with unknown fields rejected."""

    model_config = ConfigDict(extra="forbid")


class ExecBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: StrictTarget
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

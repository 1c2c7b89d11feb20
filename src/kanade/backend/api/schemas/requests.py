"""Request bodies. Strict (unknown fields are 400 errors): these are writers."""

from __future__ import annotations

from datetime import timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from kanade.backend.api.policy import Role
from kanade.backend.services.auth.passwords import password_problem
from kanade.backend.store.users import USERNAME_RE, USERNAME_RULE
from kanade.core.durations import Duration, Jitter, StartingDeadline, Timeout
from kanade.core.models.target import Target
from kanade.core.models.waves import Rollout, Wave
from kanade.core.models.wire import Shell

MAX_TARGET_PCS = 10_000
"""Pcs a request may list by name. Each is a command subject and twice a name in the exec
record (target and expected pcs), which must fit the broker's message limit; a fleet that
size is a group."""


class StrictTarget(Target):
    """A target as a writer sends it: the core model, with unknown fields rejected."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("pcs", mode="before")
    @classmethod
    def _few_enough_pcs(cls, v: object) -> object:
        if isinstance(v, list) and len(v) > MAX_TARGET_PCS:
            raise ValueError(
                f"lists {len(v)} pcs, more than {MAX_TARGET_PCS}; put them in a group "
                "(kanade group add GROUP PC...) and target the group"
            )
        return v


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
    jitter: Jitter | None = Field(
        default=None, description="random delay before the script starts, e.g. 5s (at most 1d)"
    )
    starting_deadline: StartingDeadline | None = Field(
        default=None,
        description="skip (exit 125) if the script cannot start within this (at most 7d)",
    )


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    script: str = Field(min_length=1)
    shell: Shell = "sh"
    timeout: Timeout = Field(default=timedelta(seconds=60), description="at most 7d")
    target: StrictTarget
    env: dict[str, str] | None = None
    cwd: str | None = Field(default=None, min_length=1)
    starting_deadline: Duration | None = Field(
        default=None,
        description="skip (exit 125) if the script cannot start within this; also the "
        "exec's deadline: a pc that never started is closed as no_result after it",
    )

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return v


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class NewUserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(description=USERNAME_RULE)
    password: str = Field(min_length=1, max_length=1024)
    role: Role = "viewer"

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        if not USERNAME_RE.fullmatch(v):
            raise ValueError(USERNAME_RULE)
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: str) -> str:
        problem = password_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class FreezeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: AwareDatetime | None = Field(
        default=None, alias="from", description="frozen from (inclusive); default now"
    )
    until: AwareDatetime | None = Field(
        default=None, description="frozen until (exclusive); default until cleared"
    )
    reason: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _ordered(self) -> FreezeBody:
        if self.from_ is not None and self.until is not None and self.from_ >= self.until:
            raise ValueError("from must be before until")
        return self


MAX_KEY_OVERLAP = timedelta(days=90)


class RotateKeysBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap: Duration = Field(
        default=timedelta(hours=24),
        description="how long agents keep trusting the previous key (e.g. 24h, 0s; "
        "at most 90d)",
    )

    @field_validator("overlap")
    @classmethod
    def _bounded_overlap(cls, v: timedelta) -> timedelta:
        # A retired key trusted for centuries is no rotation (and overflows a date).
        if not timedelta(0) <= v <= MAX_KEY_OVERLAP:
            raise ValueError("must be between 0s and 90d")
        return v

"""Job manifest (SPEC §2.1): *what* to run.

The models hold every rule about a single manifest, so the tolerant reader
(``JobManifest.model_validate``) and the strict writer (``kanade.core.validation``)
enforce the same things; the writer only adds the unknown-field check and the
conversion of errors into ``path: reason`` lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any, Final

from pydantic import (
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kanade.core.bounds import MAX_NAME_CHARS, MAX_TEXT_CHARS
from kanade.core.durations import CacheAge, Timeout
from kanade.core.ids import SLUG_RULE, is_slug
from kanade.core.models.base import DocModel
from kanade.core.models.wire import RunAs, Shell, StalenessMode

# --- located errors -------------------------------------------------------------------
# A model validator can only fail "at the model"; when a rule is really about one field
# (``execute.script_file``, ``when.per_target``) it raises this error type instead, with
# the field's path relative to the model in the context. ``kanade.core.validation``
# appends that path, so the user reads ``execute.script_file: ...`` and not ``execute: ...``.
RULE_ERROR_TYPE: Final = "kanade_rule"
RULES_KEY: Final = "rules"

# Validation-context keys understood by the models (see ``kanade.core.validation``).
CTX_ALLOW_SCRIPT_FILE: Final = "allow_script_file"
CTX_KNOWN_JOB_IDS: Final = "known_job_ids"


Loc = tuple[str | int, ...]


def rule_errors(violations: Sequence[tuple[Loc, str]]) -> PydanticCustomError:
    """One validation error carrying every ``(relative path, reason)`` violation found.

    A validator can raise only once; bundling lets a model report *every* broken rule
    of a document at the same time, each at its own path. The path is relative to
    where pydantic locates the error: the field for a field validator, the model for a
    model validator.
    """
    rules = tuple((tuple(at), reason) for at, reason in violations)
    text = "; ".join(reason for _, reason in rules)
    return PydanticCustomError(RULE_ERROR_TYPE, "{reason}", {"reason": text, RULES_KEY: rules})


def rule_error(at: Loc, reason: str) -> PydanticCustomError:
    """A validation error located at ``at`` (see :func:`rule_errors`)."""
    return rule_errors([(at, reason)])


def check_slug(value: str, what: str = "") -> str:
    if not is_slug(value):
        prefix = f"{what} " if what else ""
        raise ValueError(f"{prefix}{value!r:.60} {SLUG_RULE}")
    return value


NonEmptyStr = Annotated[str, Field(min_length=1)]

# ``name/version`` in the scripts object store; the name is a slug (it becomes part of an
# object-store key), the version anything printable without '/' or spaces.
_SCRIPT_OBJECT_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}/[^/\s]{1,128}$")

SCRIPT_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
SCRIPT_VERSION_PATTERN: Final = r"^[^/\s]{1,128}$"
"""The two halves of a script object reference, for path parameters (the upload route)."""


def script_object_problem(ref: str) -> str | None:
    """Why ``ref`` is not a script object reference ``name/version``; None when it is."""
    if _SCRIPT_OBJECT_RE.match(ref):
        return None
    return f"{ref!r:.80} is not name/version (e.g. disk-report/3)"


_SCRIPT_FIELDS: Final = ("script", "script_file", "script_object")
# POSIX portable user names (what useradd accepts by default). Windows DOMAIN\name is
# not accepted: run_as: user is not supported on Windows yet.
USER_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


class Execute(DocModel):
    """How to run the script. ``shell`` is required: guessing it would run a bash script
    under ``cmd`` on Windows, which is worse than asking."""

    shell: Shell
    script: str | None = None
    script_file: NonEmptyStr | None = None
    script_object: str | None = None
    timeout: Timeout
    run_as: RunAs = "system"
    # With run_as: user, the named account; without it, the user at the console.
    user: str | None = None
    cwd: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)] | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("user")
    @classmethod
    def _user_name(cls, v: str | None) -> str | None:
        if v is not None and not USER_NAME_RE.fullmatch(v):
            raise ValueError(f"{v!r:.60} is not a user name (letters, digits, _ . -; max 32)")
        return v

    @model_validator(mode="after")
    def _user_needs_run_as_user(self) -> Execute:
        if self.user is not None and self.run_as != "user":
            raise ValueError("user is only allowed with run_as: user")
        return self

    @field_validator("script_object")
    @classmethod
    def _script_object_shape(cls, v: str | None) -> str | None:
        problem = None if v is None else script_object_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("script_file")
    @classmethod
    def _script_file_allowed(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Only the CLI, which reads the file and inlines it before upload, allows this;
        # a path means nothing to the backend or an agent. Without a context (a plain
        # reader) the field is accepted: rejecting it is the writer's job.
        ctx = info.context if isinstance(info.context, dict) else {}
        if v is not None and ctx.get(CTX_ALLOW_SCRIPT_FILE, True) is False:
            raise ValueError(
                "the API does not accept script_file; the CLI inlines it at upload "
                "(send script or script_object instead)"
            )
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not name or "=" in name or "\x00" in name:
                raise ValueError(f"{name!r:.60} is not an environment variable name")
        return v

    @model_validator(mode="after")
    def _exactly_one_script(self) -> Execute:
        given = [f for f in _SCRIPT_FIELDS if getattr(self, f) is not None]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise ValueError(f"set exactly one of script, script_file or script_object (got {got})")
        return self

    @property
    def timeout_seconds(self) -> float:
        return self.timeout.total_seconds()


class Staleness(DocModel):
    """How an agent treats its cached view of KV (SPEC §3.3)."""

    mode: StalenessMode = "cached"
    max_cache_age: CacheAge | None = None

    @model_validator(mode="after")
    def _age_only_for_strict(self) -> Staleness:
        if self.mode == "strict" and self.max_cache_age is None:
            raise rule_error(("max_cache_age",), "required when mode is strict (e.g. 10m)")
        if self.mode != "strict" and self.max_cache_age is not None:
            raise rule_error(
                ("max_cache_age",), f"only applies to mode: strict (mode is {self.mode})"
            )
        return self

    @property
    def max_cache_age_seconds(self) -> float | None:
        return None if self.max_cache_age is None else self.max_cache_age.total_seconds()


class Inventory(DocModel):
    """stdout is one JSON object; these fields are shown in the fleet views."""

    display: list[NonEmptyStr] = Field(default_factory=list)
    summary: list[NonEmptyStr] = Field(default_factory=list)


class Check(DocModel):
    """stdout reports ``ok|warn|fail|unknown`` in ``status_field`` (compliance view)."""

    name: NonEmptyStr
    status_field: NonEmptyStr = "status"
    detail_field: NonEmptyStr = "detail"


class JobManifest(DocModel):
    id: str
    version: Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
    description: str | None = None
    tags: list[NonEmptyStr] = Field(default_factory=list)
    execute: Execute
    staleness: Staleness = Field(default_factory=Staleness)
    require_approval: StrictBool = False
    inventory: Inventory | None = None
    check: Check | None = None

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, v: str) -> str:
        return check_slug(v)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, v: Any) -> Any:
        # YAML reads `version: 1.10` as the float 1.1; converting it back would silently
        # change the version, so ask for quotes instead.
        if isinstance(v, bool | int | float):
            raise ValueError(f'must be text; write it in quotes, e.g. version: "{v}"')
        return v

    @property
    def timeout_seconds(self) -> float:
        return self.execute.timeout_seconds

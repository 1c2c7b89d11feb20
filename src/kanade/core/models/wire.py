"""Messages on the wire (SPEC §2.4-§2.7, §4.12): command, result, EventStarted, heartbeat,
live output.

All are JSON. Readers are tolerant (unknown fields dropped, missing optional
fields defaulted) so agents and backends of different versions interoperate;
``schema`` lets a future reader tell old shapes from new ones. Durations on the
wire are plain seconds (floats): the human grammar lives only in documents.

Every field is bounded (:mod:`kanade.core.bounds`): a message with an absurd value does
not decode, so it never reaches arithmetic, a sleep or a database column. An agent still
answers a command it cannot decode when its identity fields are sane
(:func:`decode_command`); free text of a result is cut, never refused (SPEC §7).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import Field, ValidationError, model_validator

from kanade.core.bounds import (
    MAX_COUNT,
    MAX_INLINE_OUTPUT_BYTES,
    MAX_LIST_ITEMS,
    MAX_NOTE_CHARS,
    BackoffSeconds,
    ByteCount,
    CacheAgeSeconds,
    CommandId,
    Count,
    CpuPercent,
    ExitCode,
    Instant,
    JitterSeconds,
    Name,
    OutputCap,
    Retries,
    Sha256,
    Slug,
    Text,
    TimeoutSeconds,
    WireId,
    cut,
)
from kanade.core.models.base import WireModel

Shell = Literal["sh", "bash", "pwsh", "powershell", "cmd", "python"]
RunAs = Literal["system", "user"]
StalenessMode = Literal["cached", "strict", "unchecked"]

WIRE_SCHEMA = 1

MAX_DISK_ERROR = 200
MAX_BYTES = 2**63 - 1
MAX_HELD = 10**9
MAX_LOCAL_SETTINGS = 16
SettingValue = Annotated[int, Field(strict=True, ge=-MAX_BYTES, le=MAX_BYTES)] | Annotated[
    float, Field(allow_inf_nan=False)
] | Name
"""A local setting's value on the wire: bounded by the writer (the agent) and the reader
(the model); what it means is checked where layers are merged
(:func:`kanade.core.agentconfig.effective_config`)."""
MAX_LIVE_TEXT = 16 * 1024
"""Characters of one stream in one live-output chunk (an agent sends at most this many
bytes, which decode to at most as many characters)."""
MAX_LIVE_WATCH = 256
"""Exec ids in one watch message."""
MAX_LIVE_LEASE_S = 120.0

Names = Annotated[list[Name], Field(max_length=MAX_LIST_ITEMS)]
Texts = Annotated[list[Text], Field(max_length=MAX_LIST_ITEMS)]


class StalenessWire(WireModel):
    mode: StalenessMode = "cached"
    max_cache_age_s: CacheAgeSeconds | None = None


class RetryWire(WireModel):
    max: Retries = 0
    backoff_s: BackoffSeconds = 0.0


class InventoryHint(WireModel):
    display: Names = Field(default_factory=list)
    summary: Names = Field(default_factory=list)


class CheckHint(WireModel):
    name: Name
    status_field: Name = "status"
    detail_field: Name = "detail"


class CommandAddress(WireModel):
    """Who the command was published to; the agent checks it is among them (§8.2)."""

    all: bool = False
    groups: list[Text] = Field(default_factory=list)
    pcs: list[Text] = Field(default_factory=list)


class CommandHead(WireModel):
    """What an agent needs to answer a command: who sent it for which exec, when.

    A command whose head decodes but whose body does not (a NaN timeout, a jitter of
    1e308, 50 retries) is answered with a skipped result naming the field
    (:func:`decode_command`); one whose head does not decode cannot be answered at all.
    """

    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    request_id: CommandId
    exec_id: CommandId
    job_id: Slug
    version: Name
    issued_at: Instant
    schedule_id: Slug | None = None
    nominal_time: Instant | None = None
    address: CommandAddress = Field(default_factory=CommandAddress)


class Command(CommandHead):
    shell: Shell = "sh"
    script: str | None = None
    script_object: Text | None = None
    script_sha256: Sha256 | None = None
    timeout_s: TimeoutSeconds
    jitter_s: JitterSeconds = 0.0
    run_as: RunAs = "system"
    run_as_user: Text | None = None
    cwd: Text | None = None
    env: dict[str, str] = Field(default_factory=dict)
    expires_at: Instant | None = None
    """Signed end of validity (SPEC §8.2): the agent refuses the command after it."""
    deadline_at: Instant | None = None
    staleness: StalenessWire = Field(default_factory=StalenessWire)
    retry: RetryWire | None = None
    inventory: InventoryHint | None = None
    check: CheckHint | None = None
    urgent: bool = False
    max_output_bytes: OutputCap = 256 * 1024
    notes: Texts = Field(default_factory=list)


class Result(WireModel):
    """One agent's outcome of one command. Its text is cut to the inline limit, never
    refused: a finished result must land (SPEC §7); the note says what was cut."""

    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    result_id: WireId
    request_id: WireId
    exec_id: WireId
    pc_id: Slug
    job_id: Slug
    version: Name
    exit_code: ExitCode
    skipped: bool = False
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: ByteCount = 0
    stderr_bytes: ByteCount = 0
    stdout_ref: Text | None = None
    stderr_ref: Text | None = None
    started_at: Instant | None = None
    finished_at: Instant
    attempts: Count = 1
    schedule_id: Slug | None = None
    nominal_time: Instant | None = None
    note: str | None = None
    agent_version: Name | None = None

    @model_validator(mode="after")
    def _cut_text(self) -> Result:
        # Assigned only when changed: a pydantic model's __setattr__ is not free, and this
        # runs for every result a backend projects (nearly all are within bounds).
        notes: list[str] = []
        for name in ("stdout", "stderr"):
            value = getattr(self, name)
            text, was_cut = cut(value, MAX_INLINE_OUTPUT_BYTES)
            if text is not value:
                setattr(self, name, text)
            if was_cut:
                notes.append(f"{name} cut to {MAX_INLINE_OUTPUT_BYTES} characters on receipt")
        if notes:
            self.note = "; ".join([*([self.note] if self.note else []), *notes])
        if self.note is not None:
            note = cut(self.note, MAX_NOTE_CHARS)[0]
            if note is not self.note:
                self.note = note
        return self


class EventStarted(WireModel):
    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    result_id: WireId
    request_id: WireId
    exec_id: WireId
    pc_id: Slug
    job_id: Slug
    version: Name
    started_at: Instant
    timeout_s: TimeoutSeconds | None = None
    schedule_id: Slug | None = None


MAX_QUARANTINED: Final = 64
"""Quarantined versions a heartbeat lists at most (the agent keeps its whole list)."""


class AgentUpdate(WireModel):
    """Where this agent is with self-updating (SPEC §3.8): ``state`` is one of
    ``idle`` (running the target, or none set), ``waiting`` (jitter), ``downloading``,
    ``trying``, ``switching``, ``quarantined`` (the target failed and is not retried until
    the target changes) or ``failed`` (retried later: no release for this platform, a
    download or a check that did not pass)."""

    state: Name = "idle"
    target: Name | None = None
    quarantined: list[Name] = Field(default_factory=list, max_length=MAX_QUARANTINED)
    error: Text | None = None


class Heartbeat(WireModel):
    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    pc_id: Slug
    agent_version: Name
    hostname: Text
    os_family: Name
    os_version: Text = ""
    boot_time: Instant | None = None
    cpu_percent: CpuPercent = 0.0
    rss_bytes: ByteCount = 0
    groups: Texts = Field(default_factory=list)
    schedule_set_version: Text | None = None
    last_command_at: Instant | None = None
    queue_length: Count = 0
    running: Count = 0
    update: AgentUpdate | None = None
    # The data directory (SPEC §7): full = new work is refused; held = results and events
    # kept in memory because the disk would not take them (sent or written later).
    disk_full: bool = False
    disk_error: str | None = Field(default=None, max_length=MAX_DISK_ERROR)
    disk_free_bytes: int | None = Field(default=None, ge=0, le=MAX_BYTES)
    held_messages: int = Field(default=0, ge=0, le=MAX_HELD)
    sent_at: Instant
    # What the agent was started with (flags, config file) where it differs from the
    # built-in defaults: the base its KV config layers apply over (SPEC §3.7).
    local_config: dict[Name, SettingValue] | None = Field(
        default=None, max_length=MAX_LOCAL_SETTINGS
    )
    # The groups of its own --group flags / config file (a subset of ``groups``): no KV
    # change removes them, and the backend says so when asked to.
    static_groups: Names | None = None
    # The agent's last word on a clean stop (SIGTERM, service stop): it is offline from
    # now on, not alive until its heartbeats are missed (SPEC §4.3).
    stopping: bool = False


class LiveChunk(WireModel):
    """A piece of one pc's running script's output, sent while someone watches the exec
    (SPEC §4.12). Best effort: core NATS, rate-capped at the agent, never stored; the full
    output still arrives in the :class:`Result`. ``*_elided``: bytes of that stream the cap
    (or a watch that began late) dropped just before this chunk's text. ``seq`` counts the
    chunks of one run from 0, so a reader sees a lost one; ``final``: the run's last."""

    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    exec_id: CommandId
    pc_id: Slug
    seq: Count
    attempt: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1
    stdout: str = Field(default="", max_length=MAX_LIVE_TEXT)
    stderr: str = Field(default="", max_length=MAX_LIVE_TEXT)
    stdout_elided: ByteCount = 0
    stderr_elided: ByteCount = 0
    final: bool = False


class LiveWatch(WireModel):
    """Backend → agents: someone watches these execs' live output for ``for_s`` more
    seconds (a lease the backend renews while they watch)."""

    exec_ids: list[CommandId] = Field(max_length=MAX_LIVE_WATCH)
    for_s: float = Field(gt=0, le=MAX_LIVE_LEASE_S, allow_inf_nan=False)


class ConsumerReply(WireModel):
    """The backend's answer to an agent asking for its command consumer (SPEC §8.1):
    ``ok`` with the filters it now reads, or the reason it was refused."""

    ok: bool
    filters: Texts = Field(default_factory=list)
    error: Text | None = None


class WireDecodeError(ValueError):
    """A message that is not valid JSON or not the expected shape."""


def encode(msg: WireModel) -> bytes:
    return msg.model_dump_json(by_alias=True, exclude_none=True).encode()


M = TypeVar("M", bound=WireModel)


def _shown(value: Any) -> str:
    """A rejected value as a message shows it: short, whatever it was."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_EXPLAINED = 3
"""Problems named in one message; the count of the rest follows."""


def _problem(error: Any) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ())) or "(message)"
    text = f"{loc}: {error.get('msg')}"
    if error.get("type") not in ("missing", "json_invalid", "model_type") and loc != "(message)":
        text += f" (got {_shown(error.get('input'))})"
    return text


def explain(exc: ValidationError) -> str:
    """The problems of ``exc`` as ``field.path: reason (got value)``, the first few."""
    errors = exc.errors()
    if not errors:
        return f"(message): {exc}"
    text = "; ".join(_problem(e) for e in errors[:_EXPLAINED])
    if len(errors) > _EXPLAINED:
        text += f"; and {len(errors) - _EXPLAINED} more"
    return text


def decode(model: type[M], data: bytes) -> M:
    """Decode a wire message; any malformation becomes :class:`WireDecodeError`, whose
    message names the first bad field."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise WireDecodeError(f"bad {model.__name__}: {explain(exc)}") from exc


STAND_IN_TIMEOUT_S = 1.0
"""The timeout of a stand-in command: it never runs (a gate skips it first)."""


def decode_command(data: bytes) -> tuple[Command, str | None]:
    """A command and, when its body is out of bounds, why (then the command is a stand-in
    built from its head, which the agent answers with a skipped result naming the field
    instead of running it). Raises :class:`WireDecodeError` when even the head is bad:
    there is no one to answer then."""
    try:
        return Command.model_validate_json(data), None
    except ValidationError as exc:
        problem = explain(exc)
    head = decode(CommandHead, data)
    stand_in = Command.model_validate(
        {**head.model_dump(by_alias=True), "shell": "sh", "timeout_s": STAND_IN_TIMEOUT_S}
    )
    return stand_in, problem

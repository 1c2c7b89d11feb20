"""Messages on the wire (SPEC §2.4-§2.7): command, result, EventStarted, heartbeat.

All are JSON. Readers are tolerant (unknown fields dropped, missing optional
fields defaulted) so agents and backends of different versions interoperate;
``schema`` lets a future reader tell old shapes from new ones. Durations on the
wire are plain seconds (floats): the human grammar lives only in documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeVar

from pydantic import Field, ValidationError

from kanade.core.models.base import WireModel

Shell = Literal["sh", "bash", "pwsh", "powershell", "cmd", "python"]
RunAs = Literal["system", "user"]
StalenessMode = Literal["cached", "strict", "unchecked"]

WIRE_SCHEMA = 1

MAX_DISK_ERROR = 200
MAX_BYTES = 2**63 - 1
MAX_HELD = 10**9


class StalenessWire(WireModel):
    mode: StalenessMode = "cached"
    max_cache_age_s: float | None = None


class RetryWire(WireModel):
    max: int = 0
    backoff_s: float = 0.0


class InventoryHint(WireModel):
    display: list[str] = Field(default_factory=list)
    summary: list[str] = Field(default_factory=list)


class CheckHint(WireModel):
    name: str
    status_field: str = "status"
    detail_field: str = "detail"


class CommandAddress(WireModel):
    """Who the command was published to; the agent checks it is among them (§8.2)."""

    all: bool = False
    groups: list[str] = Field(default_factory=list)
    pcs: list[str] = Field(default_factory=list)


class Command(WireModel):
    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    request_id: str
    exec_id: str
    job_id: str
    version: str
    shell: Shell = "sh"
    script: str | None = None
    script_object: str | None = None
    script_sha256: str | None = None
    timeout_s: float
    jitter_s: float = 0.0
    run_as: RunAs = "system"
    run_as_user: str | None = None
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    issued_at: datetime
    expires_at: datetime | None = None
    """Signed end of validity (SPEC §8.2): the agent refuses the command after it."""
    deadline_at: datetime | None = None
    staleness: StalenessWire = Field(default_factory=StalenessWire)
    retry: RetryWire | None = None
    inventory: InventoryHint | None = None
    check: CheckHint | None = None
    schedule_id: str | None = None
    nominal_time: datetime | None = None
    address: CommandAddress = Field(default_factory=CommandAddress)
    urgent: bool = False
    max_output_bytes: int = 256 * 1024
    notes: list[str] = Field(default_factory=list)


class Result(WireModel):
    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    result_id: str
    request_id: str
    exec_id: str
    pc_id: str
    job_id: str
    version: str
    exit_code: int
    skipped: bool = False
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_ref: str | None = None
    stderr_ref: str | None = None
    started_at: datetime | None = None
    finished_at: datetime
    attempts: int = 1
    schedule_id: str | None = None
    nominal_time: datetime | None = None
    note: str | None = None
    agent_version: str | None = None


class EventStarted(WireModel):
    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    result_id: str
    request_id: str
    exec_id: str
    pc_id: str
    job_id: str
    version: str
    started_at: datetime
    timeout_s: float | None = None
    schedule_id: str | None = None


class Heartbeat(WireModel):
    schema_: int = Field(default=WIRE_SCHEMA, alias="schema")
    pc_id: str
    agent_version: str
    hostname: str
    os_family: str
    os_version: str = ""
    boot_time: datetime | None = None
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    groups: list[str] = Field(default_factory=list)
    schedule_set_version: str | None = None
    last_command_at: datetime | None = None
    queue_length: int = 0
    running: int = 0
    # The data directory (SPEC §7): full = new work is refused; held = results and events
    # kept in memory because the disk would not take them (sent or written later).
    disk_full: bool = False
    disk_error: str | None = Field(default=None, max_length=MAX_DISK_ERROR)
    disk_free_bytes: int | None = Field(default=None, ge=0, le=MAX_BYTES)
    held_messages: int = Field(default=0, ge=0, le=MAX_HELD)
    sent_at: datetime
    # The agent's last word on a clean stop (SIGTERM, service stop): it is offline from
    # now on, not alive until its heartbeats are missed (SPEC §4.3).
    stopping: bool = False


class ConsumerReply(WireModel):
    """The backend's answer to an agent asking for its command consumer (SPEC §8.1):
    ``ok`` with the filters it now reads, or the reason it was refused."""

    ok: bool
    filters: list[str] = Field(default_factory=list)
    error: str | None = None


class WireDecodeError(ValueError):
    """A message that is not valid JSON or not the expected shape."""


def encode(msg: WireModel) -> bytes:
    return msg.model_dump_json(by_alias=True, exclude_none=True).encode()


M = TypeVar("M", bound=WireModel)


def decode(model: type[M], data: bytes) -> M:
    """Decode a wire message; any malformation becomes :class:`WireDecodeError`."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        loc = ".".join(str(p) for p in first.get("loc", ())) or "(message)"
        raise WireDecodeError(
            f"bad {model.__name__}: {loc}: {first.get('msg')} ({exc.error_count()} error(s))"
        ) from exc

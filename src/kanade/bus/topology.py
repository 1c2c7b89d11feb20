"""Create or update every stream, KV bucket and object store kanade uses (SPEC §1.2),
from one table of limits; idempotent and safe from several processes at once.

How config drift is handled: docs/bus.md, "Topology".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError

from kanade.core import retention
from kanade.core import subjects as s
from kanade.core.signing import COMMAND_LIFETIME

__all__ = [
    "KV_SPECS",
    "OBJECT_SPECS",
    "STREAM_SPECS",
    "KvSpec",
    "ObjectSpec",
    "StreamSpec",
    "TopologyError",
    "cluster_size",
    "ensure_topology",
    "replicas_for",
    "required_file_store",
]

log = logging.getLogger(__name__)

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB
MINUTE: Final = 60.0
DAY: Final = 86400.0

# Fields the broker will not change on an existing stream; a drift there is reported
# and the rest of the config is still brought up to date.
_IMMUTABLE: Final = frozenset({"storage", "retention"})


class TopologyError(RuntimeError):
    """A stream, bucket or object store is missing and the broker refused to create it."""


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str
    max_bytes: int
    max_age: float  # seconds
    max_msg_size: int
    duplicate_window: float  # seconds; Nats-Msg-Id dedup horizon
    max_msgs_per_subject: int = -1
    discard: DiscardPolicy = DiscardPolicy.OLD
    storage: StorageType = StorageType.FILE
    # nats-server 2.15 caps every stream at 1 000 consumers unless the stream says
    # otherwise (and treats <= 0 as "use the default"), so the limit is explicit.
    max_consumers: int = 1000

    def config(self, *, scale: float, replicas: int) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=self.storage,
            max_bytes=_scaled(self.max_bytes, scale),
            max_age=self.max_age,
            max_msg_size=self.max_msg_size,
            max_msgs=-1,
            max_msgs_per_subject=self.max_msgs_per_subject,
            discard=self.discard,
            duplicate_window=self.duplicate_window,
            num_replicas=replicas,
            max_consumers=self.max_consumers,
        )

    def managed(self, *, scale: float, replicas: int) -> dict[str, Any]:
        cfg = self.config(scale=scale, replicas=replicas)
        return {f: getattr(cfg, f) for f in _STREAM_MANAGED}


@dataclass(frozen=True)
class KvSpec:
    bucket: str
    description: str
    max_bytes: int
    max_value_size: int
    history: int = 1
    ttl: float | None = None  # seconds; None = keys never expire

    @property
    def stream(self) -> str:
        return f"KV_{self.bucket}"

    def config(self, *, scale: float, replicas: int) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.bucket,
            description=self.description,
            max_value_size=self.max_value_size,
            history=self.history,
            ttl=self.ttl,
            max_bytes=_scaled(self.max_bytes, scale),
            storage=StorageType.FILE,
            replicas=replicas,
            # Direct gets: reads of many keys are batched direct gets, which create no
            # consumer (kanade.bus.kvsnapshot; a consumer per read exhausted the
            # stream's consumer limit, issue #15).
            direct=True,
        )

    def managed(self, *, scale: float, replicas: int) -> dict[str, Any]:
        # The stream fields nats-py derives from a KeyValueConfig.
        return {
            "storage": StorageType.FILE,
            "max_bytes": _scaled(self.max_bytes, scale),
            "max_msg_size": self.max_value_size,
            "max_msgs_per_subject": self.history,
            "max_age": self.ttl or 0.0,
            "num_replicas": replicas,
            "allow_direct": True,
        }


@dataclass(frozen=True)
class ObjectSpec:
    bucket: str
    description: str
    max_bytes: int
    ttl: float | None = None

    @property
    def stream(self) -> str:
        return f"OBJ_{self.bucket}"

    def config(self, *, scale: float, replicas: int) -> ObjectStoreConfig:
        return ObjectStoreConfig(
            bucket=self.bucket,
            description=self.description,
            ttl=self.ttl,
            max_bytes=_scaled(self.max_bytes, scale),
            storage=StorageType.FILE,
            replicas=replicas,
        )

    def managed(self, *, scale: float, replicas: int) -> dict[str, Any]:
        return {
            "storage": StorageType.FILE,
            "max_bytes": _scaled(self.max_bytes, scale),
            "max_age": self.ttl or 0.0,
            "num_replicas": replicas,
        }


_STREAM_MANAGED: Final = (
    "subjects",
    "retention",
    "storage",
    "max_bytes",
    "max_age",
    "max_msg_size",
    "max_msgs",
    "max_msgs_per_subject",
    "discard",
    "duplicate_window",
    "num_replicas",
    "max_consumers",
)

# --- the limits table ---------------------------------------------------------------
STREAM_SPECS: Final[tuple[StreamSpec, ...]] = (
    StreamSpec(
        name=s.STREAM_COMMANDS,
        subjects=(s.COMMANDS_ALL,),
        description="backend -> agents commands; newest per job per target",
        # Product rule (ARCHITECTURE.md): one message per subject
        # kanade.cmd.<scope>.<target>.<job>, so while an agent is away only the newest
        # command of each job per target is queued; the broker supersedes older ones.
        max_msgs_per_subject=1,
        # One durable consumer per agent: this bounds how many agents one broker
        # (or cluster) serves. 100 000 is well past what a 2-core broker can feed.
        max_consumers=100_000,
        # Commands expire: an agent offline for more than a week gets nothing stale. The
        # signed expiry of every command (core.signing.COMMAND_LIFETIME) is this long.
        max_age=COMMAND_LIFETIME.total_seconds(),
        # Commands are small (inline scripts; big ones live in the scripts store).
        max_bytes=384 * MiB,
        max_msg_size=1 * MiB,
        # Old commands are the least useful: make room by dropping them.
        discard=DiscardPolicy.OLD,
        # The backend retries a publish whose ack was lost within seconds.
        duplicate_window=2 * MINUTE,
    ),
    StreamSpec(
        name=s.STREAM_RESULTS,
        subjects=(s.RESULTS_ALL, s.STARTED_ALL),
        description="agents -> backend results and started events",
        # Projected into SQL within seconds; kept as long as the database keeps results
        # (core.retention), for rebuilding it.
        max_age=retention.RESULTS_MAX_AGE.total_seconds(),
        max_bytes=1 * GiB,
        # A result must never be refused for size (SPEC §7: never lose a result): allow
        # a full max_payload; the agent moves big outputs to the outputs store anyway.
        max_msg_size=8 * MiB,
        # When full, drop the oldest (long projected) results, never refuse new ones.
        discard=DiscardPolicy.OLD,
        # Agents replay their on-disk outbox after a crash or a long disconnection:
        # a wider window turns those replays into broker-side duplicates.
        duplicate_window=10 * MINUTE,
    ),
    StreamSpec(
        name=s.STREAM_EXECS,
        subjects=(s.EXECS_ALL,),
        description="execution records; the SQL projection is rebuilt from them",
        # As long as the database keeps ended execs (core.retention): never longer than the
        # results, or a rebuilt exec would find none of its results and close as no_result.
        max_age=retention.EXECUTIONS_MAX_AGE.total_seconds(),
        max_bytes=256 * MiB,
        max_msg_size=1 * MiB,
        duplicate_window=2 * MINUTE,
    ),
    StreamSpec(
        name=s.STREAM_DECISIONS,
        subjects=(s.DECISIONS_ALL,),
        description="agents -> backend decisions of local (runs_on: agent) schedules",
        # One subject per pc and schedule; each report carries that pc's running totals,
        # so the newest ones are all the counters need: keep those, as long as the database
        # keeps decisions (core.retention).
        max_msgs_per_subject=100,
        max_age=retention.DECISIONS_MAX_AGE.total_seconds(),
        max_bytes=128 * MiB,
        max_msg_size=64 * KiB,
        # Reports come through the agent's outbox, replayed after a long disconnection.
        duplicate_window=10 * MINUTE,
    ),
    StreamSpec(
        name=s.STREAM_AUDIT,
        subjects=(s.AUDIT_ALL,),
        description="audit trail of operator and system actions",
        # Audit is kept as long as the database keeps it (core.retention: a year); bounded
        # in bytes so it cannot fill the disk.
        max_age=retention.AUDIT_MAX_AGE.total_seconds(),
        max_bytes=256 * MiB,
        max_msg_size=1 * MiB,
        duplicate_window=2 * MINUTE,
    ),
)

# KV: history 1 everywhere (state, not a log: audit covers "who changed what"). Values
# are small JSON documents; 1 MiB max value catches a runaway writer early.
KV_SPECS: Final[tuple[KvSpec, ...]] = (
    KvSpec(s.KV_JOBS, "job catalog (manifests)", max_bytes=64 * MiB, max_value_size=1 * MiB),
    KvSpec(s.KV_SCHEDULES, "schedules", max_bytes=32 * MiB, max_value_size=1 * MiB),
    KvSpec(s.KV_PINS, "version pins", max_bytes=16 * MiB, max_value_size=1 * MiB),
    KvSpec(s.KV_REVOCATIONS, "revoked jobs", max_bytes=16 * MiB, max_value_size=1 * MiB),
    KvSpec(s.KV_CONFIG, "agent config layers", max_bytes=16 * MiB, max_value_size=1 * MiB),
    KvSpec(s.KV_GROUPS, "group membership", max_bytes=32 * MiB, max_value_size=1 * MiB),
    KvSpec(s.KV_FREEZE, "fleet freeze", max_bytes=8 * MiB, max_value_size=1 * MiB),
    KvSpec(s.KV_TRUST, "command-signing key set", max_bytes=1 * MiB, max_value_size=64 * KiB),
    # Operator state (users, approvals, rollouts with their waves, schedule counters): one
    # document per row or aggregate, the newest only, no age limit — a wiped database is
    # rebuilt from it (SPEC §1.3). A rollout document carries the command of each wave,
    # hence values up to the broker's max_payload.
    KvSpec(
        s.KV_STATE,
        "operator state the database is rebuilt from",
        max_bytes=128 * MiB,
        max_value_size=8 * MiB,
    ),
    # Scheduler dispatch marks ("occurrence X of schedule Y was fired"): one key per
    # occurrence, so the bucket would grow forever; marks older than any catch-up
    # window are useless, hence a 30-day TTL. (KV streams created by nats-py 2.16 also
    # allow per-key TTLs via the Nats-TTL header.)
    KvSpec(
        s.KV_DISPATCH,
        "scheduler dispatch marks",
        max_bytes=64 * MiB,
        max_value_size=64 * KiB,
        ttl=30 * DAY,
    ),
)

OBJECT_SPECS: Final[tuple[ObjectSpec, ...]] = (
    ObjectSpec(s.OBJ_SCRIPTS, "script objects (sha256-pinned)", max_bytes=256 * MiB),
    # Large outputs are only worth keeping as long as their results (core.retention); the
    # backend's retention worker deletes those of results it prunes earlier (by count).
    ObjectSpec(
        s.OBJ_OUTPUTS,
        "large script outputs",
        max_bytes=768 * MiB,
        ttl=retention.RESULTS_MAX_AGE.total_seconds(),
    ),
    ObjectSpec(s.OBJ_RELEASES, "agent releases", max_bytes=512 * MiB),
)


REPLICATED_NODES: Final = 3
"""From this many brokers on, every stream and bucket is kept three times (R3): a majority
survives one node down (SPEC §9). Fewer brokers keep one copy (R1)."""


def replicas_for(nodes: int) -> int:
    """The replica count of every stream and bucket on a cluster of ``nodes`` brokers."""
    return 3 if nodes >= REPLICATED_NODES else 1


def cluster_size(nc: Client) -> int:
    """How many brokers the server ``nc`` is connected to says its cluster has: the client
    URLs it gossips (``connect_urls``, every node's, its own included); 1 for a single
    broker or a cluster that does not advertise them."""
    info = getattr(nc, "_server_info", None) or {}
    if not info.get("cluster"):
        return 1
    return max(1, len(set(info.get("connect_urls") or ())))


def required_file_store(scale: float = 1.0) -> int:
    """Bytes of JetStream file storage the topology reserves at ``scale``."""
    specs: list[StreamSpec | KvSpec | ObjectSpec] = [*STREAM_SPECS, *KV_SPECS, *OBJECT_SPECS]
    return sum(_scaled(spec.max_bytes, scale) for spec in specs)


async def ensure_topology(
    js: JetStreamContext,
    *,
    scale: float = 1.0,
    replicas: int | None = None,
    consumers: bool = True,
) -> None:
    """Create or update every stream, KV bucket and object store (idempotent).

    ``scale`` multiplies every byte limit. ``replicas``: how many copies the broker keeps
    of each (SPEC §9: 3 on a cluster, 1 on a single broker); None decides from the
    cluster the connection sees (:func:`cluster_size`) and never lowers what a stream
    already has (a node that is down while a backend starts must not cost a copy), an
    explicit count is applied as it is. An existing stream is updated in place — a
    deployment growing from one broker to a cluster keeps its data — and, with
    ``consumers``, so is every durable consumer of a replicated stream that has fewer
    copies than its stream (updating a consumer needs the backend's rights; the operator
    tools pass False and the backend catches up at its next start). Never raises for
    config drift; raises :class:`TopologyError` if a missing stream cannot be created,
    and connection-level errors (broker gone, JetStream disabled) propagate.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    if replicas is not None and replicas < 1:
        raise ValueError("replicas must be at least 1")
    auto = replicas is None
    want = replicas_for(cluster_size(js._nc)) if replicas is None else replicas
    names: list[str] = []
    for spec in STREAM_SPECS:
        stream_cfg = spec.config(scale=scale, replicas=want)
        names.append(spec.name)
        await _ensure(
            js,
            spec.name,
            functools.partial(js.add_stream, stream_cfg),
            spec.managed(scale=scale, replicas=want),
            keep_more_replicas=auto,
        )
    for kv in KV_SPECS:
        kv_cfg = kv.config(scale=scale, replicas=want)
        names.append(kv.stream)
        await _ensure(
            js,
            kv.stream,
            functools.partial(js.create_key_value, kv_cfg),
            kv.managed(scale=scale, replicas=want),
            keep_more_replicas=auto,
        )
    for obj in OBJECT_SPECS:
        obj_cfg = obj.config(scale=scale, replicas=want)
        names.append(obj.stream)
        await _ensure(
            js,
            obj.stream,
            functools.partial(js.create_object_store, obj.bucket, config=obj_cfg),
            obj.managed(scale=scale, replicas=want),
            keep_more_replicas=auto,
        )
    if consumers:
        for name in names:
            with contextlib.suppress(NotFoundError):
                copies = (await js.stream_info(name)).config.num_replicas or 1
                if copies > 1:
                    await _scale_consumers(js, name, copies)


async def _ensure(
    js: JetStreamContext,
    stream: str,
    create: Callable[[], Awaitable[object]],
    managed: dict[str, Any],
    *,
    keep_more_replicas: bool = False,
) -> None:
    """Create ``stream`` if missing, else reconcile the ``managed`` fields
    (``keep_more_replicas``: a stream with more replicas than wanted keeps them)."""
    try:
        current = (await js.stream_info(stream)).config
    except NotFoundError:
        try:
            await create()
            log.info("created JetStream stream %s", stream)
            return
        except APIError as exc:
            # Lost a race with another process creating the same stream? The broker
            # then answers "name already in use" (10058) for a different config, or
            # even "insufficient storage" (10047), as it counts the reservation of our
            # duplicate request before noticing the stream exists. So look again.
            try:
                current = (await js.stream_info(stream)).config
            except NotFoundError:
                # Really missing and not creatable (e.g. the reservation does not fit
                # in max_file_store): not drift, a broker that cannot host kanade.
                raise TopologyError(f"cannot create JetStream stream {stream}: {exc}") from exc

    drift = {f: want for f, want in managed.items() if not _same(getattr(current, f), want)}
    if keep_more_replicas and (current.num_replicas or 1) > drift.get("num_replicas", 99):
        del drift["num_replicas"]
    if not drift:
        return
    desc = _describe(current, drift)
    try:
        await js.update_stream(current.evolve(**drift))
        log.info("updated stream %s: %s", stream, desc)
        return
    except APIError as exc:
        refusal = exc
    # Retry without the fields the broker cannot change so the rest still converges.
    frozen = {f for f in drift if f in _IMMUTABLE}
    mutable = {f: v for f, v in drift.items() if f not in frozen}
    if frozen and mutable:
        try:
            await js.update_stream(current.evolve(**mutable))
            log.warning(
                "stream %s: cannot change %s (%s); other fields updated: %s",
                stream,
                ", ".join(sorted(frozen)),
                refusal.description,
                _describe(current, mutable),
            )
            return
        except APIError as exc:
            refusal = exc
    log.warning(
        "stream %s differs from the wanted config (%s) and the broker refused the update "
        "(%s); using the existing stream as it is",
        stream,
        desc,
        refusal.description or refusal,
    )


async def _scale_consumers(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Give every durable consumer of ``stream`` with fewer copies the stream's replica
    count: a consumer keeps the count it was created with (one restored from a single
    broker, or made before its stream was scaled, has one copy), and a consumer without a
    copy on a surviving node stops when its node does. Its ack state is kept; a consumer
    the broker refuses to scale is reported and left as it is."""
    offset = 0
    while True:
        page = await js.consumers_info(stream, offset=offset)
        for info in page:
            cfg = info.config
            have = 1 + len((info.cluster.replicas if info.cluster else None) or [])
            # Memory-storage consumers (the agents' command consumers) stay as they are:
            # disposable by design, re-created by their agent (bus/consumers.py).
            if not cfg.durable_name or cfg.mem_storage or have >= replicas:
                continue
            cfg.num_replicas = replicas
            try:
                await js.add_consumer(stream, cfg)
            except Exception as exc:  # refused, or no rights: never fatal to start-up
                log.warning("consumer %s of %s keeps %d replica(s): %r", cfg.durable_name,
                            stream, have, exc)  # fmt: skip
        offset += len(page)
        if len(page) < _CONSUMER_PAGE:
            return


_CONSUMER_PAGE: Final = 256
"""Consumers per page of the broker's consumer list."""


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(have, float):
        return math.isclose(float(have or 0.0), float(want or 0.0), abs_tol=1e-6)
    if isinstance(want, list):
        return sorted(have or []) == sorted(want)
    return bool(have == want)


def _describe(current: StreamConfig, fields: dict[str, Any]) -> str:
    return ", ".join(f"{f}: {_fmt(getattr(current, f))} -> {_fmt(v)}" for f, v in fields.items())


def _fmt(value: Any) -> str:
    return str(value.value) if hasattr(value, "value") else repr(value)


def _scaled(n: int, scale: float) -> int:
    return int(n * scale)

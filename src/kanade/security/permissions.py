"""Who may publish and subscribe to what on the broker: the permission matrix (SPEC §8.1).

Pure functions of a role (and, for an agent, its pc_id) returning allow lists; the JWT
minting in :mod:`kanade.security.nats_jwt` turns them into user claims. The table in
docs/security.md is this module in prose: change both together.

Every list is an *allow* list: anything not listed is refused by the broker. JetStream is
driven through ``$JS.API.*`` request subjects, so "may read bucket X" means "may call the
info/get API of stream ``KV_X``" — never create, delete or purge anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kanade.core import subjects as s
from kanade.core.subjects import agent_inbox_prefix

__all__ = [
    "AGENT_KV_READ",
    "OPERATOR_INBOX_PREFIX",
    "Permissions",
    "agent_inbox_prefix",
    "agent_permissions",
    "backend_permissions",
    "operator_permissions",
    "swarm_permissions",
]

JS_API: Final = "$JS.API"
# Outside _INBOX, so no pc_id can ever collide with it.
OPERATOR_INBOX_PREFIX: Final = "_KANADE_OPERATOR"

# The buckets an agent mirrors (agent/fleet/state.py) and may therefore read whole.
# Group membership is read only for the agent's own key (below).
AGENT_KV_READ: Final = (
    s.KV_JOBS,
    s.KV_SCHEDULES,
    s.KV_PINS,
    s.KV_REVOCATIONS,
    s.KV_CONFIG,
    s.KV_FREEZE,
    s.KV_TRUST,
)


@dataclass(frozen=True)
class Permissions:
    """Allow lists; ``None`` = unrestricted (the backend only)."""

    pub: tuple[str, ...] | None
    sub: tuple[str, ...] | None
    allow_responses: bool = False


def _stream_read(stream: str) -> list[str]:
    """Read one stream: info, direct/last-message gets, and the short-lived ordered
    consumers a watcher or an object download uses (create + delete of *ephemeral*
    consumers — the create subject without a durable name)."""
    return [
        f"{JS_API}.STREAM.INFO.{stream}",
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
        f"{JS_API}.CONSUMER.CREATE.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.*.>",
        f"{JS_API}.CONSUMER.DELETE.{stream}.*",
        f"{JS_API}.CONSUMER.INFO.{stream}.*",
    ]


def _kv_read(bucket: str, key: str = ">") -> tuple[list[str], list[str]]:
    stream = f"KV_{bucket}"
    pub = [
        f"{JS_API}.STREAM.INFO.{stream}",
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.$KV.{bucket}.{key}",
    ]
    if key == ">":
        pub = _stream_read(stream)
    return pub, [f"$KV.{bucket}.{key}"]


def agent_permissions(pc_id: str) -> Permissions:
    """One agent: its own command consumer, its own result/event/heartbeat/live-output
    subjects, the buckets it obeys (read-only), script downloads and output uploads."""
    consumer = s.agent_consumer_name(pc_id)
    pub = [
        # its command consumer, which the backend provisions: pull, ack, look at it
        f"{JS_API}.CONSUMER.MSG.NEXT.{s.STREAM_COMMANDS}.{consumer}",
        f"{JS_API}.CONSUMER.INFO.{s.STREAM_COMMANDS}.{consumer}",
        f"$JS.ACK.{s.STREAM_COMMANDS}.{consumer}.>",
        s.consumer_request_subject(pc_id),
        # what it reports, under its own pc_id only
        s.result_subject(pc_id),
        s.started_subject(pc_id),
        s.heartbeat_subject(pc_id),
        s.agent_decisions(pc_id),
        s.agent_live(pc_id),  # a running script's output while watched (core NATS)
        # scripts by digest (read) and large outputs (write chunks + metadata, no purge);
        # nats-py's object-store get finds the chunk stream by subject (names only)
        f"{JS_API}.STREAM.NAMES",
        *_stream_read(f"OBJ_{s.OBJ_SCRIPTS}"),
        # agent releases (read only): a self-update downloads its target (SPEC §3.8)
        *_stream_read(f"OBJ_{s.OBJ_RELEASES}"),
        f"{JS_API}.STREAM.INFO.OBJ_{s.OBJ_OUTPUTS}",
        f"{JS_API}.STREAM.MSG.GET.OBJ_{s.OBJ_OUTPUTS}",
        f"{JS_API}.DIRECT.GET.OBJ_{s.OBJ_OUTPUTS}.>",
        f"$O.{s.OBJ_OUTPUTS}.C.>",
        f"$O.{s.OBJ_OUTPUTS}.M.>",
    ]
    sub = [
        f"{agent_inbox_prefix(pc_id)}.>",
        f"{s.PREFIX}.ctl.{pc_id}.>",
        s.KILL_SUBJECT,
        s.LIVE_WATCH_SUBJECT,
    ]
    for bucket in AGENT_KV_READ:
        kv_pub, kv_sub = _kv_read(bucket)
        pub += kv_pub
        sub += kv_sub
    kv_pub, kv_sub = _kv_read(s.KV_GROUPS, pc_id)
    pub += kv_pub
    sub += kv_sub
    return Permissions(pub=tuple(dict.fromkeys(pub)), sub=tuple(sub), allow_responses=True)


def backend_permissions() -> Permissions:
    """The backend is the control plane: it creates the topology, provisions consumers,
    signs and publishes commands. Its credential is the deployment's crown jewel."""
    return Permissions(pub=None, sub=None)


def operator_permissions() -> Permissions:
    """``kanade jetstream setup|status``: create/update streams and buckets and see their
    state — but never purge or delete anything, read a message, open a consumer, or publish
    a command, result or record (those go through the API, audited)."""
    return Permissions(
        pub=(
            f"{JS_API}.INFO",
            f"{JS_API}.STREAM.NAMES",
            f"{JS_API}.STREAM.LIST",
            f"{JS_API}.STREAM.INFO.*",
            f"{JS_API}.STREAM.CREATE.*",
            f"{JS_API}.STREAM.UPDATE.*",
            f"{JS_API}.CONSUMER.NAMES.*",
            f"{JS_API}.CONSUMER.LIST.*",
        ),
        sub=(f"{OPERATOR_INBOX_PREFIX}.>",),
    )


def swarm_permissions() -> Permissions:
    """A benchmark swarm (many simulated agents in one process, SPEC §10.1): every agent
    right for any pc_id, and creating its own command consumers. Never issued by
    ``kanade up`` or enrolment; only ``kanade bench`` mints it, on its own throw-away
    broker."""
    return Permissions(
        pub=(
            f"{JS_API}.>",
            f"$JS.ACK.{s.STREAM_COMMANDS}.>",
            s.result_subject("*"),
            s.started_subject("*"),
            s.heartbeat_subject("*"),
            s.decision_subject("*", "*"),
            s.live_subject("*", "*"),
            s.consumer_request_subject("*"),
            f"$O.{s.OBJ_OUTPUTS}.>",
        ),
        sub=("_INBOX.>", f"{s.PREFIX}.ctl.>", "$KV.>"),
        allow_responses=True,
    )

"""How big a message the broker takes, checked before anything is created (issue #15).

A command, an exec record or a job document over its stream's (or bucket's) size limit is
refused by the broker only when published — after the exec row exists, so the exec would
stay ``pending`` forever and "retry shortly" could never succeed. The exec service and the
job catalog check the encoded bytes against these limits (the topology's own table) first
and answer 413 with the limit and what to do instead.
"""

from __future__ import annotations

from typing import Final

from kanade.backend.errors import TooLarge
from kanade.bus.topology import KV_SPECS, STREAM_SPECS
from kanade.core import subjects

HEADROOM: Final = 8 * 1024
"""Bytes kept free for the headers a message carries on top of its body (signature,
``Nats-Msg-Id``, KV operation): they count against the same limit."""


def _stream_limit(name: str) -> int:
    return next(spec.max_msg_size for spec in STREAM_SPECS if spec.name == name) - HEADROOM


def _bucket_limit(bucket: str) -> int:
    return next(spec.max_value_size for spec in KV_SPECS if spec.bucket == bucket) - HEADROOM


COMMAND_BYTES: Final = _stream_limit(subjects.STREAM_COMMANDS)
EXEC_RECORD_BYTES: Final = _stream_limit(subjects.STREAM_EXECS)
JOB_BYTES: Final = _bucket_limit(subjects.KV_JOBS)

USE_SCRIPT_OBJECT: Final = (
    "upload the script as a script object (kanade script upload FILE NAME/VERSION, or "
    "PUT /api/scripts/NAME/VERSION) and run a job with execute.script_object: NAME/VERSION"
)
USE_GROUPS: Final = (
    "target fewer pcs by name: put them in a group (kanade group add GROUP PC...) and "
    "target the group"
)


def require_fits(what: str, size: int, limit: int, advice: str) -> None:
    """Raise :class:`TooLarge` when ``size`` bytes are over ``limit``."""
    if size > limit:
        raise TooLarge(
            f"{what} would be {size} bytes, over the limit of {limit} bytes; {advice}",
            limit_bytes=limit,
            size_bytes=size,
        )

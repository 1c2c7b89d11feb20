"""The database handle: a synchronous SQLAlchemy Core engine driven from asyncio.

Why not ``sqlalchemy.ext.asyncio``: it needs ``greenlet``, which is not among
the project's dependencies, and it pays a thread hop per statement. Here a
whole unit of work (a projector batch: upserts + counter refresh) is one plain
function run in a worker thread, so the event loop never blocks and a batch
costs one hop. All writes go through ONE writer thread: SQLite has a single
writer anyway, and serialising in-process avoids lock contention (and its
retry sleeps) between the projector, the heartbeat flusher and the API.

Several backend replicas on one PostgreSQL database (SPEC §9) are several writer threads,
yet the store's units of work were written for one: a projector batch recounts an exec's
counters from its result rows, the reaper closes rows the projector may be completing. So
every write transaction on PostgreSQL first takes one transaction-scoped advisory lock
(:data:`WRITER_LOCK`): the replicas' writes run one after the other, each seeing every
write committed before it — exactly the single writer they were designed for — while
reads stay concurrent. A replica that dies mid-transaction releases the lock with its
connection.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Connection, make_url

T = TypeVar("T")

WRITER_LOCK = 0x6B616E616465  # "kanade": the advisory lock every write transaction takes
"""One write transaction at a time across every backend sharing a PostgreSQL database."""

Fence = Callable[[Connection], None]
"""Run first in a fenced write transaction; raises to refuse it (the writer lost its lease)."""

# Async driver names people may pass out of habit (and the bare scheme), mapped to the
# sync driver this module drives (same database, same URL otherwise). PostgreSQL goes
# through psycopg 3: measured against asyncpg on ingest (docs/performance.md).
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
}


def database_url(db: str) -> str:
    """``--db`` accepts a file path (SQLite) or a full SQLAlchemy URL (e.g. PostgreSQL)."""
    if "://" in db:
        return db
    path = Path(db).expanduser().resolve()
    return f"sqlite:///{path}"


def password_in_argv(db: str, argv: list[str]) -> bool:
    """Whether ``db`` (the ``--db`` value) holds a password and came from the command line,
    which every local user can read (``ps``), rather than from ``$KANADE_DB``."""
    if "://" not in db:
        return False
    try:
        password = make_url(db).password
    except Exception:
        return False
    return bool(password) and any(str(password) in arg for arg in argv)


def safe_url(url: str) -> str:
    """``url`` for a log line: a password in it is masked (logs are read by more people
    than the database's credentials are meant for, SPEC §8.3)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable database URL)"


def sync_url(url: str) -> str:
    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False) if driver else url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the projector writes. synchronous=NORMAL in
    # WAL mode survives a process crash; only a power loss can roll back the
    # last commits, which is acceptable for a projection that can be rebuilt
    # from the streams (SPEC §1.3). busy_timeout rides out short contention
    # with readers and with other processes (a second backend on the file).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> Engine:
    url = sync_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Connections are handed between worker threads by the pool.
        engine = sa_create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa_create_engine(url, pool_pre_ping=True)


_TAKE_WRITER_LOCK = text(f"SELECT pg_advisory_xact_lock({WRITER_LOCK})")

COMMIT_TAGS = "kanade.commit_tags"
"""``conn.info`` key: tags a unit of work leaves for the listeners of its commit."""


def tag_commit(conn: Connection, tag: str) -> None:
    """Tell :meth:`Database.listen` listeners of ``tag`` once this transaction commits
    (e.g. "operator state changed": the state publisher wakes up)."""
    conn.info.setdefault(COMMIT_TAGS, set()).add(tag)


class Database:
    """Run units of work against the projection DB from async code."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kanade-db-writer")
        # PostgreSQL's default READ COMMITTED gives each SELECT its own snapshot; a read is
        # several SELECTs that must agree (an exec's counters and its result rows), so
        # reads run REPEATABLE READ: one snapshot, and a read-only transaction at that
        # level never fails with a serialisation error.
        self._reader = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self.dialect == "postgresql"
            else self.engine
        )
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._fence: Fence | None = None
        # One count for the database and its fenced views (a list, shared by copy.copy):
        # retention, writing through a view, yields to the projectors' writes.
        self._pending = [0]

    def fenced(self, fence: Fence) -> Database:
        """This database for a worker that may write only while it holds a lease: every
        write transaction runs ``fence`` first, in the transaction, so a writer that lost
        its lease (another replica took over while it was paused) commits nothing. Shares
        the engine, the writer thread and the pending-writes count; close the original,
        never the view."""
        view = copy.copy(self)
        view._fence = fence
        return view

    @property
    def pending_writes(self) -> int:
        """Writes submitted and not finished yet (queued for, or on, the writer thread): a
        background writer that yields to the others looks here (retention)."""
        return self._pending[0]

    def listen(self, tag: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) after each committed write tagged ``tag``."""
        self._listeners.setdefault(tag, []).append(callback)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction on the writer thread; commit, or roll back on error."""
        tags: set[str] = set()

        def tagged(conn: Connection) -> T:
            # The dict is taken while the connection is alive: reading ``conn.info`` after
            # the server went away mid-transaction raises PendingRollbackError, which would
            # hide the connection error (transient: redelivered) behind one that reads as
            # a refused row (skipped).
            info = conn.info
            try:
                return work(conn)
            finally:
                # Taken whatever happens: conn.info outlives the transaction in the pool.
                tags.update(info.pop(COMMIT_TAGS, ()))

        self._pending[0] += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._writer, self._in_transaction, tagged
            )
        finally:
            self._pending[0] -= 1
        for tag in tags:
            for callback in self._listeners.get(tag, ()):
                callback()
        return result

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a pooled connection in a worker thread (reads run concurrently)."""
        return await asyncio.to_thread(self._in_transaction, work, True)

    def _in_transaction(self, work: Callable[[Connection], T], snapshot: bool = False) -> T:
        with (self._reader if snapshot else self.engine).begin() as conn:
            if snapshot and self.dialect == "sqlite":
                # pysqlite opens a transaction only before DML, so each SELECT of a read
                # would see its own moment (an exec's counters from before a commit next
                # to its result rows from after it). BEGIN makes the whole read one
                # snapshot; in WAL mode that never blocks the writer.
                conn.exec_driver_sql("BEGIN")
            if not snapshot:
                if self.dialect == "postgresql":
                    conn.execute(_TAKE_WRITER_LOCK)
                if self._fence is not None:
                    self._fence(conn)
            return work(conn)

    async def ping(self) -> bool:
        try:
            await self.read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.engine.dispose()

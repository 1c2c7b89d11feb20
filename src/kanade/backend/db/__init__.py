"""kanade.backend.db: the SQL projection.

* :mod:`.tables` — SQLAlchemy Core tables; :mod:`.types` — column types.
* :mod:`.migrations` — alembic environment and revisions; :mod:`.migrate` runs them.
* :mod:`.database` — engine (SQLite WAL pragmas) and the async :class:`Database` handle.
* :mod:`.writes` — batched UPSERTs and counter refresh; :mod:`.reads` — API queries.
"""

"""kanade.backend: the ``kanade-backend`` process (SPEC §4).

Module map:

* :mod:`.cli` — ``kanade-backend run``: logging, uvicorn, clean signal handling.
* :mod:`.app` — ``create_app(settings)``: lifespan (migrate, broker link, workers).
* :mod:`.settings` — :class:`Settings`.
* :mod:`.broker_link` — background connect-with-retry, 503 until the broker is ready.
* :mod:`.projector` — results/EventStarted and exec records → SQL (batched UPSERTs).
* :mod:`.consumers` — durable pull consumers and the batching loop.
* :mod:`.heartbeats` — ``kanade.hb.*`` → ``agents`` (coalesced, batched).
* :mod:`.execs` — the exec service: pin, resolve, record, publish, audit.
* :mod:`.jobs` — the job catalog in KV ``kanade_jobs``.
* :mod:`.exec_status` — the execution status transition table.
* :mod:`.records` — exec and audit records written to the backend's streams.
* :mod:`.errors` — service errors, each with its HTTP status.
* :mod:`.metrics` — Prometheus metrics; :mod:`.services` — what routes depend on.
* :mod:`.inprocess` — run the app inside an event loop (tests, benchmarks).
* :mod:`.api` — the routes; :mod:`.db` — tables, migrations, reads and writes.
"""

"""Projection of the streams into SQL (SPEC §4.2): one :class:`~.worker.ProjectionWorker`
per durable consumer — :mod:`.results`, :mod:`.execs`, :mod:`.audit` — with the message →
row decoding in :mod:`.rows` and the derived inventory facts in :mod:`.facts`."""

"""kanade.backend: the ``kanade-backend`` process (SPEC §4) — API, dashboard, projectors,
scheduler and the other background workers, in layers.

Its module map and the rules between the layers: docs/ARCHITECTURE.md.
"""

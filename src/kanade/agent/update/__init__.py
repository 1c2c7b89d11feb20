"""Self-update (SPEC §3.8): :mod:`.state` at every start, :mod:`.updater` only when a
target version differs from the running one. Design: docs/deploy.md."""

"""kanade.core: the pure rules and typed models every process shares — no I/O, no clock
reads (docs/ARCHITECTURE.md)."""

"""On-disk durability of the agent: the admission ledger, the outbox, the local
scheduler's files, and the crash-safe writes they rest on (see docs/ARCHITECTURE.md)."""

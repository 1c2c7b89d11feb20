"""kanade.agent: the ``kanade-agent`` process — intake, admission ledger, execution,
outbox, fleet view, heartbeats and the local scheduler (docs/agent.md)."""

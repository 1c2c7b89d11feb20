"""Every background loop of the backend: projectors, reaper, heartbeats, rollouts, approvals,
scheduler."""

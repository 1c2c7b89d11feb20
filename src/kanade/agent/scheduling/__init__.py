"""The agent's local scheduler for ``runs_on: agent`` schedules (SPEC §3.6); every rule it
applies lives in :mod:`kanade.core.scheduling`."""

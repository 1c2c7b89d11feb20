"""kanade.backend.api: HTTP routes (health, jobs, execs, fleet), bodies and error mapping."""

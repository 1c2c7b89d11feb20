"""kanade.backend.db."""

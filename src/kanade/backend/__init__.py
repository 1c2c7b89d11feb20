"""kanade.backend."""

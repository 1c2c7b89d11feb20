"""kanade.backend.api."""

"""kanade.core."""

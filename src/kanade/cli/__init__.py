"""kanade.cli."""

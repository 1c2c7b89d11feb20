"""kanade.agent."""

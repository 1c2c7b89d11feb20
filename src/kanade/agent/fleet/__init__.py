"""The fleet state an agent mirrors from KV and the view derived from it (gates, groups,
config)."""

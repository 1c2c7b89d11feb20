"""The HTTP side of notifications: one bounded, timed request to a webhook."""

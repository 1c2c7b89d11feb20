"""kanade: run scripts on fleets of machines over NATS JetStream."""

__version__ = "0.1.0"

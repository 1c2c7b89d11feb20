"""Notifications: the event detector and the delivery sender (docs/notifications.md).

Both run only while their process holds the scheduler lease (``leading``), so one
replica detects and delivers; a standby takes over with the lease, from the database."""

"""Notifications: the event detector and the delivery sender (docs/notifications.md).

Both run only on the replica holding the deciders lease (:mod:`kanade.backend.workers.
deciders`), writing through the database it fences, so one replica detects and delivers; a
standby takes over with the lease, from the database."""

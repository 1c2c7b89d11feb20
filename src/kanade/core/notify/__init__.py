"""Notifications (webhooks) as pure rules: event kinds and their texts, the webhook
configuration, payloads, signatures and the retry schedule (docs/notifications.md)."""

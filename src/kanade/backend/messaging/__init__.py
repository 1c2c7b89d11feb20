"""The backend's side of the bus: broker link, durable consumers, the records it publishes,
and the in-process live-update hub."""

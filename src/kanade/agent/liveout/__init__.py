"""Live output (SPEC §4.12): a running script's output published while someone watches,
rate-capped so a chatty script can flood neither the broker nor the browser
(docs/live-output.md)."""

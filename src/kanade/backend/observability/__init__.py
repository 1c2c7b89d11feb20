"""Prometheus metrics of the backend process."""

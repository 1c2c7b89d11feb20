"""Projection of the streams into SQL (SPEC §4.2)."""

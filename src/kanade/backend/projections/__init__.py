"""Projections added on top of results and execs: inventory facts, check statuses, audit.

Each module holds the SQL writes of one projection (called inside the projector's
batch transaction, so a fact is never committed without its result and vice versa)
and the reads behind its API views.
"""

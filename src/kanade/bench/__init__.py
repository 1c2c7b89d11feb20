"""Benchmarks (SPEC §10): each prints JSON lines ``{name, params, median, min, max, runs, unit}``.

Run them with ``kanade bench <name> …`` (or ``make bench`` for the standard set).
They start real processes on loopback — a broker, a backend, real agents or a
swarm of simulated ones — and measure from the outside, as an operator would.
"""

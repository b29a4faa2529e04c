"""Benchmarks: open-loop load against the passthrough worker and the scorer."""

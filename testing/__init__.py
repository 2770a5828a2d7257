"""Fakes for the tests and benchmarks: simulated sweeps with a known truth (no production code imports this)."""

"""Benchmarks of the pacing core against the peers a Python user would otherwise use."""

"""Helpers of the benchmark scripts (``scripts/benchmark_*.py``); not used for training."""

"""Benchmarks: each one a module with a ``main``; ``scripts/benchmark_*.py`` are thin entries."""

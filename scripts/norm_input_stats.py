#!/usr/bin/env python
"""Entry point of :mod:`un_tools.benchmarks.norm_input_stats` (its docstring, or ``--help``, says what it does)."""

from un_tools.benchmarks.norm_input_stats import main

if __name__ == "__main__":
    raise SystemExit(main())

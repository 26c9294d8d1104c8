#!/usr/bin/env python
"""Entry point of :mod:`un_tools.benchmarks.profile_training_step` (its docstring, or ``--help``, says what it does)."""

from un_tools.benchmarks.profile_training_step import main

if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Entry point of :mod:`un_tools.benchmarks.norm_batch_stats` (its docstring, or ``--help``, says what it does)."""

from un_tools.benchmarks.norm_batch_stats import *  # noqa: F401,F403  (its functions, for ``runpy.run_path``)
from un_tools.benchmarks.norm_batch_stats import main

if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Entry point of :mod:`un_tools.benchmarks.distributed` (its docstring, or ``--help``, says what it does)."""

from un_tools.benchmarks.distributed import main

if __name__ == "__main__":
    raise SystemExit(main())

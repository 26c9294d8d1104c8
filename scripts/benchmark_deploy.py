#!/usr/bin/env python
"""Deployment benchmark (fairseq eager, ONNX Runtime fp32/int8, CTranslate2): see
``un_tools/benchmarks/deploy.py`` and ``docs/fuse_and_benchmarks.md``."""

import sys

from un_tools.benchmarks.deploy import main

if __name__ == "__main__":
    sys.exit(main())

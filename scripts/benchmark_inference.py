#!/usr/bin/env python
"""Eager inference benchmark (LN, UN, UN fused, no norm; teacher forcing and beam search; CPU
or CUDA): see ``un_tools/benchmarks/inference.py``. Deployment runtimes (ONNX Runtime,
CTranslate2) are ``scripts/benchmark_deploy.py``."""

import sys

from un_tools.benchmarks.inference import main

if __name__ == "__main__":
    sys.exit(main())

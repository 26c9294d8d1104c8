#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the package.
# torch is installed first and pinned to the CPU wheel that lies on this machine's disk; an
# unpinned torch would pull gigabytes of CUDA. Override with TORCH_SPEC=... on a GPU box.
# PYTHON (default python3) is the interpreter .venv is made from; every other script then runs
# .venv's (scripts/lib/python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.un-fairseq-installed
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  echo "[setup] installing $TORCH_SPEC, then the package with its test and repro extras"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
  .venv/bin/python -m pip install -q -e ".[test,repro]"
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, fairseq; print("torch", torch.__version__, "| fairseq", fairseq.__version__)' 2>/dev/null)"

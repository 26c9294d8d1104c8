#!/usr/bin/env bash
# The prepared GPU check (docs/gpu.md): installs the wheels of scripts/gpu-wheels.sh from .whl/
# when present, runs the norm tests on the GPU, trains UN and LN briefly, times fairseq-generate
# for LN, UN, folded UN and NoNorm, and writes one JSON record under results/gpu/.
#   scripts/gpu-check.sh                                 # GPU machine, about 5 minutes
#   scripts/gpu-check.sh --device cpu --quick --out DIR  # the reduced mode CI runs
# Python: $PYTHON, else the project's .venv, else python3. Options: scripts/gpu-check.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m un_tools.benchmarks.gpu_check "$@"

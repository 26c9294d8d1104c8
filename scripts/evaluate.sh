#!/usr/bin/env bash
# Evaluate one run: average the last epoch checkpoints, beam 5, tokenised BLEU + sacreBLEU.
# Usage: scripts/evaluate.sh --help. Details: docs/reproduce.md. The logic is in un_tools/reproduce/.
# Interpreter: scripts/lib/python.sh (PYTHON, else .venv, else python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"
exec "$PYTHON" -m un_tools.reproduce.cli evaluate "$@"

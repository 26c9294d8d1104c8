#!/usr/bin/env bash
# Table 9: UN ablations (FP GM / BP AM / BP alpha).
# Usage: scripts/reproduce-table9.sh --help. Details: docs/reproduce.md. The logic is in un_tools/reproduce/.
# Interpreter: scripts/lib/python.sh (PYTHON, else .venv, else python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"
exec "$PYTHON" -m un_tools.reproduce.cli table9 "$@"

#!/usr/bin/env bash
# Table 10: UN momentum 0.9 / 0.8 / 0.7 / 0.6.
# Usage: scripts/reproduce-table10.sh --help. Details: docs/reproduce.md. The logic is in un_tools/reproduce/.
# Interpreter: scripts/lib/python.sh (PYTHON, else .venv, else python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"
exec "$PYTHON" -m un_tools.reproduce.cli table10 "$@"

#!/usr/bin/env bash
# One training run (profile x norm x seed); resumes, marks FAIL on divergence.
# Usage: scripts/train.sh --help. Details: docs/reproduce.md. The logic is in un_tools/reproduce/.
# Interpreter: scripts/lib/python.sh (PYTHON, else .venv, else python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"
exec "$PYTHON" -m un_tools.reproduce.cli train "$@"

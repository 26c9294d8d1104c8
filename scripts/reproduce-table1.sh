#!/usr/bin/env bash
# Table 1: every normalizer x seed, then the markdown table and Figure 1.
# Usage: scripts/reproduce-table1.sh --help. Details: docs/reproduce.md. The logic is in un_tools/reproduce/.
# Interpreter: scripts/lib/python.sh (PYTHON, else .venv, else python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"
exec "$PYTHON" -m un_tools.reproduce.cli table1 "$@"

#!/usr/bin/env bash
# Table 9: UN ablations (FP GM / BP AM / BP alpha).
# Usage: scripts/reproduce-table9.sh --help. Details: docs/reproduce.md. The logic is in un_tools/reproduce/.
# Set PYTHON to choose the interpreter (default: .venv/bin/python if present, else python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
exec "$PYTHON" -m un_tools.reproduce.cli table9 "$@"

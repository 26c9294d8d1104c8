#!/usr/bin/env bash
# WMT14 En-Fr as fairseq's examples/translation/prepare-wmt14en2fr.sh (Python port).
# Usage: scripts/prepare-wmt14-en-fr.sh [--orig DIR] [--bpe-codes FILE] [--test-only] --out DIR
# Interpreter: scripts/lib/python.sh (PYTHON, else .venv, else python3). See docs/data.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"
# relative paths are the caller's: no cd; the repository is put on the import path instead
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m un_tools.data.wmt14 "$@"

#!/usr/bin/env bash
# IWSLT14 De-En as fairseq's examples/translation/prepare-iwslt14.sh (Python port).
# Usage: scripts/prepare-iwslt14.sh [--orig DIR|ARCHIVE] [--url URL] [--bpe-codes FILE] [--test-only] --out DIR
# Interpreter: scripts/lib/python.sh (PYTHON, else .venv, else python3). See docs/data.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"
# relative paths are the caller's: no cd; the repository is put on the import path instead
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m un_tools.data.iwslt14 "$@"

#!/usr/bin/env bash
# WMT14 En-Fr as fairseq's examples/translation/prepare-wmt14en2fr.sh (Python port).
# Usage: scripts/prepare-wmt14-en-fr.sh [--orig DIR] [--bpe-codes FILE] [--test-only] --out DIR
# Set PYTHON to choose the interpreter (default: python). See docs/data.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m un_fairseq.data.wmt14 "$@"

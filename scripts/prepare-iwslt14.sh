#!/usr/bin/env bash
# IWSLT14 De-En as fairseq's examples/translation/prepare-iwslt14.sh (Python port).
# Usage: scripts/prepare-iwslt14.sh [--orig DIR] [--bpe-codes FILE] [--test-only] --out DIR
# Set PYTHON to choose the interpreter (default: python). See docs/data.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m un_fairseq.data.iwslt14 "$@"

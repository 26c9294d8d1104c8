#!/usr/bin/env bash
# Multi30k task 1 De-En (Moses lowercase + normalize-punctuation + tokenizer, joint
# sentencepiece BPE, fairseq-preprocess --joined-dictionary).
# Usage: scripts/prepare-multi30k.sh [--raw DIR] [--vocab-size N] --out DIR
# Interpreter: scripts/lib/python.sh (PYTHON, else .venv, else python3). See docs/data.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"
# relative paths are the caller's: no cd; the repository is put on the import path instead
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m un_tools.data.multi30k "$@"

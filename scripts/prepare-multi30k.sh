#!/usr/bin/env bash
# Multi30k task 1 De-En (Moses lowercase + normalize-punctuation + tokenizer, joint
# sentencepiece BPE, fairseq-preprocess --joined-dictionary).
# Usage: scripts/prepare-multi30k.sh [--raw DIR] [--vocab-size N] --out DIR
# Set PYTHON to choose the interpreter (default: python). See docs/data.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m un_fairseq.data.multi30k "$@"

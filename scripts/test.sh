#!/usr/bin/env bash
# The test command: set up .venv if needed, then run the whole suite (CPU, under 10 minutes).
# Two worker processes, one test file each at a time (module fixtures are built once); the
# tests are single-threaded, so this cuts the wall time on CI's 2 cores by a third or more.
# Pass -n 0 to run in one process, or -n N on a bigger machine (later flags win).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/lib/python.sh  # the .venv just set up, unless PYTHON names another interpreter
exec "$PYTHON" -m pytest -q -n 2 --dist loadfile --durations=10 "$@"

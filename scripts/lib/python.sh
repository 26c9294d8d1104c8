# Sourced by the scripts in scripts/: sets PYTHON, the interpreter every script runs, the same way
# in each: the PYTHON environment variable if set, else the repository's .venv (what
# scripts/setup.sh makes), else python3 from PATH. Also sets ROOT, the repository root.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

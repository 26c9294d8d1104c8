#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels that a GPU machine without network access lacks to
# run fairseq and this plugin, for that machine's Python (default 3.12), then check them:
#
#   bash scripts/gpu-wheels.sh                      # download + build, check the wheel tags
#   bash scripts/gpu-wheels.sh --python-version 3.11 --check /path/to/python
#       --check PY: install the wheels into a scratch folder and import fairseq, its CLIs and
#       the plugin with PY (a Python whose version matches; it needs torch and what PRESENT
#       lists), print every distribution those imports loaded, and fail if one is neither
#       among the wheels nor in PRESENT.
#
# On the GPU machine (docs/gpu.md) scripts/gpu-check.sh installs them into a scratch folder
# with pip install --no-index --no-deps --target.
#
# What fairseq, its CLIs and the plugin import (read with --check): torch, typing-extensions,
# numpy, hydra-core, omegaconf, antlr4-python3-runtime, bitarray, PyYAML, packaging, tqdm,
# cython, sacrebleu (with portalocker, tabulate, colorama, lxml), scikit-learn (with scipy,
# joblib, threadpoolctl, cloudpickle, narwhals), setuptools. The GPU machine is assumed to
# hold PRESENT below; the rest is downloaded here, each at the version the project's .venv
# holds (else the newest).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PY=${PYTHON:-python3}
pyver=3.12
check=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) pyver=${2:?--python-version needs a value such as 3.12}; shift 2 ;;
    --check) check=${2:?--check needs a python executable}; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu-wheels.sh: unknown argument '$1' (allowed: --python-version X.Y, --check PYTHON)" >&2; exit 2 ;;
  esac
done
[[ $pyver =~ ^3\.[0-9]+$ ]] || { echo "gpu-wheels.sh: --python-version '$pyver' is not of the form 3.N" >&2; exit 2; }

# The GPU machine's Python already has these (fairseq needs them; not downloaded).
PRESENT="torch numpy regex sacrebleu sentencepiece scikit-learn cython tqdm packaging pyyaml
         portalocker tabulate colorama lxml scipy joblib threadpoolctl cloudpickle narwhals
         setuptools click typing-extensions pytest"
# What it lacks. antlr4-python3-runtime 4.9.3 (hydra/omegaconf pin 4.9.*) exists only as a
# source archive: its pure-Python wheel is built here.
NEEDED="ve-fairseq hydra-core omegaconf bitarray sacremoses subword-nmt mock"
DEFAULT_SPEC="ve-fairseq==0.12.3 hydra-core==1.3.* omegaconf==2.3.*"

# .whl/ stays out of git: a worktree keeps its excludes in the common git folder.
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
rm -rf .whl && mkdir .whl  # one version of each: two make the installation fail

spec() {  # NAME -> NAME==version of .venv, else the default spec, else NAME
  local v
  if [ -x .venv/bin/python ] && v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null); then
    echo "$1==$v"; return
  fi
  for s in $DEFAULT_SPEC; do [ "${s%%==*}" = "$1" ] && { echo "$s"; return; }; done
  echo "$1"
}
specs=(); for n in $NEEDED; do specs+=("$(spec "$n")"); done
antlr=$(spec antlr4-python3-runtime); [ "$antlr" = antlr4-python3-runtime ] && antlr=antlr4-python3-runtime==4.9.3
target=(--python-version "$pyver" --implementation cp --abi "cp${pyver/./}" --abi abi3 --abi none
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform any)
echo "[gpu-wheels] downloading for Python $pyver: ${specs[*]} $antlr"
"$PY" -m pip download -q --no-deps --only-binary=:all: "${target[@]}" -d .whl "${specs[@]}"
"$PY" -m pip wheel -q --no-deps -w .whl "$antlr"

# Every wheel must install on the target Python (pip checks the tags without installing).
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
"$PY" -m pip install -q --dry-run --no-index --no-deps --only-binary=:all: "${target[@]}" \
  --target "$scratch/tags" .whl/*.whl
echo "[gpu-wheels] $(ls .whl | wc -l) wheels for Python $pyver, $(du -sh .whl | cut -f1) in .whl/:"
ls -1 .whl

if [ -n "$check" ]; then
  got=$("$check" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$got" = "$pyver" ] || { echo "gpu-wheels.sh: --check '$check' is Python $got, the wheels are for $pyver" >&2; exit 2; }
  "$check" -m pip install -q --no-index --no-deps --no-compile --target "$scratch/site" .whl/*.whl
  WHEELS="$NEEDED antlr4-python3-runtime" PRESENT="$PRESENT" \
  PYTHONPATH="$scratch/site:$PWD" PYTHONNOUSERSITE=1 "$check" - <<'EOF'
import importlib, importlib.metadata as md, os, re, sys
for name in ("fairseq", "fairseq_cli.preprocess", "fairseq_cli.train", "fairseq_cli.generate",
             "un_fairseq", "un_fairseq.fuse", "un_tools.benchmarks.gpu_check"):
    importlib.import_module(name)
import fairseq.data.data_utils_fast, fairseq.data.token_block_utils_fast  # compiled parts
dists = md.packages_distributions()
tops = {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)
found = sorted({d for t in tops for d in dists.get(t, ())}, key=str.lower)
print("[gpu-wheels] imports load:", " ".join(found))
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
known = {norm(n) for n in (os.environ["WHEELS"] + " " + os.environ["PRESENT"]).split()} | {"un-fairseq"}
missing = sorted(d for d in found if norm(d) not in known)
if missing:
    sys.exit(f"gpu-wheels.sh: the imports also load {', '.join(missing)}: add each to NEEDED or PRESENT")
EOF
  echo "[gpu-wheels] check passed with $check"
fi

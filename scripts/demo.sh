#!/usr/bin/env bash
# The main job, end to end, on a fresh machine (CPU is enough: about 15 minutes on 2 quiet cores once
# set up, 14 of them training):
#   1. set up .venv (torch CPU wheel first, then this package),
#   2. prepare Multi30k De-En (from ../shared/data/multi30k when present, else downloaded),
#   3. train a pre-norm Transformer whose every norm is UN (configs/demo.toml: the converged
#      Multi30k profile's model on a faster schedule),
#   4. average its last checkpoints, translate the test set with beam 5 and print BLEU,
#   5. fold every norm into the linear layers (un-fuse, verified), translate again with the fused
#      model, and print both BLEUs (equal), both translation times and a few translations.
# Re-running resumes: a finished training is skipped, an interrupted one continues; the two
# translations (about a minute) are always redone, so their times are measured side by side.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<USAGE
usage: bash scripts/demo.sh [--norm-type NAME] [--work DIR]

  --norm-type NAME  un (default), layer, rms, power, power_noscale, batch, mabn or none
                    (only un, power_noscale, batch, mabn and none can be fused)
  --work DIR        where data, checkpoints and outputs go (default: work/, git-ignored)

Hyperparameters (configs/demo.toml, measured for UN only):
  $(source scripts/lib/python.sh && "$PYTHON" -m un_tools.reproduce.config demo description 2>/dev/null || echo "see configs/demo.toml")
USAGE
}

NORM=un WORK=work
while [ $# -gt 0 ]; do
  case "$1" in
    --norm-type) NORM=${2:?--norm-type needs a name}; shift 2 ;;
    --work) WORK=${2:?--work needs a folder}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh
source scripts/lib/python.sh  # the .venv just set up, unless PYTHON names another interpreter
export PYTHON
DATA=$WORK/m30k
RUN=$WORK/demo/$NORM
echo "[demo] 1/4 preparing Multi30k into $DATA"
bash scripts/prepare-multi30k.sh --out "$DATA"
echo "[demo] 2/4 training transformer_un --norm-type $NORM (configs/demo.toml) into $RUN"
bash scripts/train.sh --profile demo --norm "$NORM" --seed 1 --data "$DATA/bin" --out "$RUN"
echo "[demo] 3/4 averaging, translating the test set with beam 5, scoring"
bash scripts/evaluate.sh --run "$RUN" --data "$DATA/bin" --dataset multi30k --profile demo --force
echo "[demo] 4/4 folding every norm into the linear layers, translating again with the fused model"
if ! "$PYTHON" -m un_fairseq.fuse "$RUN/avg.pt" "$RUN/avg_fused.pt" --data "$DATA/bin"; then
  echo "[demo] --norm-type $NORM cannot be fused (see above); the unfused result:"
  grep -h "BLEU4 = " "$RUN/generate-test.txt" | tail -n 1
  exit 0
fi
bash scripts/evaluate.sh --run "$RUN" --data "$DATA/bin" --dataset multi30k --profile demo \
  --checkpoint "$RUN/avg_fused.pt" --force
"$PYTHON" -m un_tools.reproduce.cli compare --unfused "$RUN/generate-test.txt" \
  --fused "$RUN/generate-test-avg_fused.txt" --label "${NORM^^}"
echo "[demo] outputs: $RUN/generate-test.txt (unfused), $RUN/generate-test-avg_fused.txt (fused), $RUN/avg_fused.pt"

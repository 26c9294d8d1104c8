#!/usr/bin/env bash
# The main job, end to end, on a fresh machine (CPU is enough, about 10 minutes on 2 cores):
#   1. set up .venv (torch CPU wheel first, then this package),
#   2. prepare Multi30k De-En (from ../shared/data/multi30k when present, else downloaded),
#   3. train a small pre-norm Transformer whose every norm is UN (configs/mini.sh),
#   4. average its checkpoints, translate the test set with beam 5 and print BLEU.
# Re-running resumes: finished steps are skipped, an interrupted training continues.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<USAGE
usage: bash scripts/demo.sh [--norm-type NAME] [--work DIR]

  --norm-type NAME  un (default), layer, rms, power, power_noscale, batch, mabn or none
  --work DIR        where data, checkpoints and outputs go (default: work/, git-ignored)

Hyperparameters: configs/mini.sh (the CPU profile of the Table 1 reproduction).
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
export PYTHON=.venv/bin/python
DATA=$WORK/m30k
RUN=$WORK/demo/$NORM
echo "[demo] 1/3 preparing Multi30k into $DATA"
bash scripts/prepare-multi30k.sh --out "$DATA"
echo "[demo] 2/3 training transformer_un --norm-type $NORM (configs/mini.sh) into $RUN"
bash scripts/train.sh --profile mini --norm "$NORM" --seed 1 --data "$DATA/bin" --out "$RUN"
echo "[demo] 3/3 averaging, translating the test set with beam 5, scoring"
bash scripts/evaluate.sh --run "$RUN" --data "$DATA/bin" --dataset multi30k --profile mini
echo "[demo] hypotheses: $RUN/generate-test.txt"
grep -h "BLEU4 = " "$RUN/generate-test.txt" | tail -n 1

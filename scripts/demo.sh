#!/usr/bin/env bash
# The main job, end to end, on a fresh machine (CPU is enough):
#   1. set up .venv (torch CPU wheel first, then this package),
#   2. prepare Multi30k De-En (from ../shared/data/multi30k when present, else downloaded),
#   3. train a small pre-norm Transformer whose every norm is UN for a few hundred updates,
#   4. translate the test set (beam 5) and print BLEU.
# Re-running resumes: finished steps are skipped, training continues from checkpoint_last.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<USAGE
usage: bash scripts/demo.sh [--updates N] [--norm-type NAME] [--work DIR]

  --updates N       training updates (default 400; about 10 minutes on 2 CPU cores)
  --norm-type NAME  un (default), layer, rms, power, power_noscale, batch, mabn or none
  --work DIR        where data, checkpoints and outputs go (default: work/, git-ignored)
USAGE
}

UPDATES=400 NORM=un WORK=work
while [ $# -gt 0 ]; do
  case "$1" in
    --updates) UPDATES=${2:?--updates needs a number}; shift 2 ;;
    --norm-type) NORM=${2:?--norm-type needs a name}; shift 2 ;;
    --work) WORK=${2:?--work needs a folder}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$UPDATES" in ''|*[!0-9]*) echo "demo.sh: --updates must be a whole number, got '$UPDATES'" >&2; exit 2 ;; esac

bash scripts/setup.sh
BIN=.venv/bin
DATA=$WORK/multi30k
RUN=$WORK/demo-$NORM
mkdir -p "$RUN"
echo "[demo] 1/3 preparing Multi30k into $DATA"
PYTHON=$BIN/python bash scripts/prepare-multi30k.sh --out "$DATA"

echo "[demo] 2/3 training transformer_un (--norm-type $NORM) for $UPDATES updates into $RUN"
UN_WARMUP=$(( UPDATES / 4 ))
"$BIN/fairseq-train" "$DATA/bin" --user-dir un_fairseq \
  --arch transformer_un --norm-type "$NORM" --share-all-embeddings \
  --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 256 --decoder-embed-dim 256 \
  --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 \
  --encoder-attention-heads 4 --decoder-attention-heads 4 \
  --un-warmup "$UN_WARMUP" --pn-warmup "$UN_WARMUP" --mabn-warmup "$UN_WARMUP" \
  --optimizer adam --adam-betas '(0.9, 0.98)' --lr 1e-3 --lr-scheduler inverse_sqrt \
  --warmup-updates "$UN_WARMUP" --warmup-init-lr 1e-7 --weight-decay 1e-4 \
  --dropout 0.1 --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
  --max-tokens 4096 --max-update "$UPDATES" --seed 1 --cpu --num-workers 0 \
  --save-dir "$RUN/checkpoints" --no-epoch-checkpoints --save-interval-updates 100 \
  --keep-interval-updates 1 --disable-validation --log-format simple --log-interval 25 \
  2>&1 | tee "$RUN.train.log" | grep --line-buffered -E "train_inner|done training|Error|error" \
  || status=${PIPESTATUS[0]}
if [ "${status:-0}" -ne 0 ]; then
  echo "[demo] training failed (exit ${status}); see $RUN.train.log" >&2
  exit 1
fi

echo "[demo] 3/3 translating the test set (beam 5)"
"$BIN/fairseq-generate" "$DATA/bin" --user-dir un_fairseq --path "$RUN/checkpoints/checkpoint_last.pt" \
  --gen-subset test --beam 5 --batch-size 128 --remove-bpe sentencepiece --cpu \
  > "$RUN.generate-test.txt" 2> "$RUN.generate.log"
echo "[demo] hypotheses: $RUN.generate-test.txt"
tail -n 1 "$RUN.generate-test.txt"

# IWSLT14 De-En, the authors' recipe (Unified-Normalization, NMT): read by scripts/train.sh,
# evaluate.sh and reproduce-table*.sh (sourced by bash; bash arrays of fairseq flags).
DESCRIPTION="IWSLT14 De-En, transformer_un_iwslt_de_en (6+6 layers, 512/1024, 4 heads), pre-norm, 100k updates"
DATASET=iwslt14

MODEL_FLAGS=(--arch transformer_un_iwslt_de_en --share-all-embeddings)
TRAIN_FLAGS=(
  --optimizer adam --adam-betas "(0.9, 0.98)" --clip-norm 0.0
  --lr 7e-4 --lr-scheduler inverse_sqrt --warmup-updates 6000 --warmup-init-lr 1e-7
  --max-update 100000
  --dropout 0.3 --attention-dropout 0.1 --activation-dropout 0.1 --weight-decay 1e-4
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1
  --max-tokens 4096
  --keep-last-epochs 10
)
# UN: window 4, warmup 4000. PowerNorm's warmup (--pn-warmup) defaults to --warmup-updates (6000),
# as in the PowerNorm recipe; MABN keeps its release defaults (window 16, warmup 100).
NORM_FLAGS=(--un-window 4 --un-warmup 4000)
# validation BLEU every epoch (greedy, for Figure 1); the dataset adds --eval-bleu-remove-bpe
VALID_FLAGS=(--eval-bleu --eval-bleu-args '{"beam": 1, "max_len_a": 1.2, "max_len_b": 10}' --eval-bleu-detok space)
LOG_FLAGS=(--log-interval 100)
GEN_FLAGS=(--beam 5 --batch-size 128)
AVG_CHECKPOINTS=10
SEEDS=(1 2 3 4 5)
# FAIL if a logged training loss exceeds EXPLODE_RATIO x the lowest one before it (or is not finite)
EXPLODE_RATIO=2

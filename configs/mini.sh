# mini: Table 1 at CPU scale on Multi30k De-En (29k sentence pairs), about 5 minutes of training
# per run on 2 CPU cores. A small pre-norm Transformer; every schedule length is scaled down with
# the training (see docs/reproduce.md, "mini scale").
DESCRIPTION="Multi30k De-En, 3+3 layers, dim 128, FFN 512, 4 heads, pre-norm, 1 epoch (~260 updates) of 2048-token batches"
DATASET=multi30k

MODEL_FLAGS=(
  --arch transformer_un --share-all-embeddings
  --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 128 --decoder-embed-dim 128
  --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512
  --encoder-attention-heads 4 --decoder-attention-heads 4
)
# the IWSLT14 recipe's optimiser and regularisation with the schedule scaled to one epoch of
# ~260 updates: lr warmup 80 updates (~1/3 of training), peak lr 1e-3 (small model), dropout 0.1
# (no over-fitting in one epoch). Batches of 2048 tokens, half the paper's 4096: on 2 shared CPU
# cores an update of 4096 tokens takes ~2.5 s, and 2 epochs of those would be ~11 min per run.
# --max-epoch rather than --max-update: training then ends on an epoch boundary, so the final
# model is an epoch checkpoint (fairseq saves none when it stops inside an epoch).
TRAIN_FLAGS=(
  --optimizer adam --adam-betas "(0.9, 0.98)" --clip-norm 0.0
  --lr 1e-3 --lr-scheduler inverse_sqrt --warmup-updates 80 --warmup-init-lr 1e-7
  --max-epoch 1
  --dropout 0.1 --attention-dropout 0.0 --activation-dropout 0.0 --weight-decay 1e-4
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1
  --max-tokens 2048 --num-workers 0
  --keep-last-epochs 10
)
# UN warmup 50 ~ 2/3 of the lr warmup, the paper's ratio (4000 / 6000); window 4 as in the paper.
# PowerNorm warmup = lr warmup (80, its default). MABN: window 16 (release default), warmup 50
# like UN (its release default, 100, would be 40% of this run).
NORM_FLAGS=(--un-window 4 --un-warmup 50 --mabn-warmup 50)
# validation loss and greedy BLEU on the full valid set (1,014 sentences) every 64 updates
# (4 points per run; ~15 s each on 2 cores), not at epoch ends
VALID_FLAGS=(
  --eval-bleu --eval-bleu-args '{"beam": 1, "max_len_a": 1.2, "max_len_b": 10}' --eval-bleu-detok space
  --validate-interval-updates 64 --validate-interval 1000
)
LOG_FLAGS=(--log-interval 10)
GEN_FLAGS=(--beam 5 --batch-size 128)
# the paper averages its last 10 epoch checkpoints, the last ~10% of training; here one epoch is
# all of training, so the "average" is the one epoch checkpoint (= the final model)
AVG_CHECKPOINTS=1
SEEDS=(1 2 3)
EXPLODE_RATIO=2

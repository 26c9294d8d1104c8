# smoke: a tiny model for a few updates, to test the pipeline (tests/test_reproduce.py uses it on
# the toy corpus of tests/fairseq_fixtures.py). Its numbers mean nothing.
DESCRIPTION="tiny 2+2-layer model (dim 32), 1 update of one batch (= 1 epoch on the toy corpus)"
DATASET=toy

MODEL_FLAGS=(
  --arch transformer_un --share-all-embeddings
  --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 32 --decoder-embed-dim 32
  --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64
  --encoder-attention-heads 4 --decoder-attention-heads 4
)
TRAIN_FLAGS=(
  --optimizer adam --adam-betas "(0.9, 0.98)" --lr 1e-3
  --lr-scheduler inverse_sqrt --warmup-updates 4 --warmup-init-lr 1e-7
  --max-update 1 --dropout 0.1
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1
  --max-tokens 8192 --num-workers 0 --keep-last-epochs 10
)
NORM_FLAGS=(--un-window 2 --un-warmup 1 --pn-warmup 1 --mabn-window 2 --mabn-warmup 1)
VALID_FLAGS=(--eval-bleu --eval-bleu-args '{"beam": 1, "max_len_b": 16}' --eval-bleu-detok space)
LOG_FLAGS=(--log-interval 1)
GEN_FLAGS=(--beam 5 --batch-size 64 --max-len-b 16)
AVG_CHECKPOINTS=10
SEEDS=(1)
EXPLODE_RATIO=2

# WMT14 En-Fr, big Transformer, DeLighT-style set-up (ASSUMED; see docs/reproduce.md):
# the paper says it follows DeLighT (Mehta et al., 2021) for WMT14 En-Fr. DeLighT uses fairseq's
# prepare-wmt14en2fr.sh data (40k joint BPE, newstest2014 test) and fairseq's scaled big-Transformer
# recipe (Ott et al., 2018). What we assume: transformer_un_vaswani_wmt_en_fr_big, shared
# embeddings (joined dictionary), Adam (0.9, 0.98), lr 7e-4 after 4000 linear warmup updates from
# 1e-7 then inverse sqrt, dropout 0.1 (attention 0.1, no ReLU dropout), label smoothing 0.1,
# ~131k tokens per update (8 x 4096 tokens x --update-freq 4 on 8 GPUs; with fewer GPUs raise
# --update-freq), 100k updates, average the last 10 epoch checkpoints, beam 4, length penalty 0.6.
DESCRIPTION="WMT14 En-Fr, transformer_un_vaswani_wmt_en_fr_big, pre-norm, DeLighT-style (assumed)"
DATASET=wmt14

MODEL_FLAGS=(--arch transformer_un_vaswani_wmt_en_fr_big --share-all-embeddings)
TRAIN_FLAGS=(
  --optimizer adam --adam-betas "(0.9, 0.98)" --clip-norm 0.0
  --lr 7e-4 --lr-scheduler inverse_sqrt --warmup-updates 4000 --warmup-init-lr 1e-7
  --max-update 100000
  --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.0
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1
  --max-tokens 4096 --update-freq 4
  --keep-last-epochs 10 --save-interval-updates 2000 --keep-interval-updates 1  # resume point every 2000 updates (~1/5 epoch): docs/reproduce.md
)
# UN window 4, warmup 4000 (= the lr warmup here); PowerNorm warmup = --warmup-updates
NORM_FLAGS=(--un-window 4 --un-warmup 4000)
VALID_FLAGS=(--eval-bleu --eval-bleu-args '{"beam": 1, "max_len_a": 1.2, "max_len_b": 10}' --eval-bleu-detok space)
LOG_FLAGS=(--log-interval 100)
GEN_FLAGS=(--beam 4 --lenpen 0.6 --batch-size 128)
AVG_CHECKPOINTS=10
SEEDS=(1 2 3 4 5)
EXPLODE_RATIO=2

# Multi30k task 1 De-En as built by scripts/prepare-multi30k.sh (lowercased, Moses-tokenised,
# joint sentencepiece BPE); test = test_2016_flickr (1,000 sentences).
DESCRIPTION="Multi30k De-En (test_2016_flickr)"
SRC=de
TGT=en
REMOVE_BPE=sentencepiece
LOWERCASE=1          # the model only sees lowercased text: sacreBLEU with case:lc against the raw reference
SACREBLEU_REF=../shared/data/multi30k/raw/test_2016_flickr.en.gz
DATA_DIR=work/m30k/bin   # scripts/prepare-multi30k.sh --out work/m30k

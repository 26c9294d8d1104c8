# IWSLT14 De-En as built by scripts/prepare-iwslt14.sh (Moses-tokenised, lowercased, 10k joint BPE).
DESCRIPTION="IWSLT14 De-En (fairseq's prepare-iwslt14.sh recipe), tokenised and lowercased"
SRC=de
TGT=en
REMOVE_BPE="@@ "     # subword-nmt
LOWERCASE=1          # the data is lowercased: sacreBLEU is case-insensitive (case:lc)
SACREBLEU_REF=""     # none shipped: sacreBLEU against the detokenised tokenised references
DATA_DIR=data-bin/iwslt14/bin   # scripts/prepare-iwslt14.sh --out data-bin/iwslt14

# WMT14 En-Fr as built by scripts/prepare-wmt14-en-fr.sh (Moses -a tokenised, cased, 40k joint BPE).
DESCRIPTION="WMT14 En-Fr, test newstest2014 (3,003 sentences)"
SRC=en
TGT=fr
REMOVE_BPE="@@ "
LOWERCASE=0
SACREBLEU_REF=../shared/data/wmt14-en-fr/newstest2014-fren-ref.fr.sgm
DATA_DIR=data-bin/wmt14-en-fr/bin   # scripts/prepare-wmt14-en-fr.sh --out data-bin/wmt14-en-fr

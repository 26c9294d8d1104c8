# The toy corpus of tests/fairseq_fixtures.py (no BPE; languages src -> tgt), for the smoke profile.
DESCRIPTION="toy reversal task of the tests"
SRC=src
TGT=tgt
REMOVE_BPE=""
LOWERCASE=0
SACREBLEU_REF=""
DATA_DIR=""

"""Reproduction pipeline of the paper's Tables 1, 9, 10 and Figure 1.

The bash scripts in ``scripts/`` (``train.sh``, ``evaluate.sh``, ``reproduce-table*.sh``) only
call the modules of this package; the experiments' hyperparameters live once in ``configs/``
(bash files defining arrays of fairseq flags, read here through bash itself).

- :mod:`.config`: load a profile (``configs/NAME.sh``) and a dataset (``configs/dataset-NAME.sh``)
- :mod:`.logs`: parse fairseq's training log, detect divergence
- :mod:`.train`: one training run (resume, FAIL marking)
- :mod:`.signals`, :mod:`.lock`: stop signals end the fairseq children; one driver per run folder
- :mod:`.evaluate`: checkpoint averaging, beam search, tokenised BLEU and sacreBLEU
- :mod:`.sweep`: the Table 1 / 9 / 10 loops
- :mod:`.tables`: aggregation into the paper's markdown tables
- :mod:`.plots`: Figure 1 (training loss and validation BLEU over updates)
"""

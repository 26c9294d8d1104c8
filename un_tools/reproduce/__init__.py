"""Reproduction pipeline of the paper's Tables 1, 9, 10 and Figure 1.

The bash scripts in ``scripts/`` (``train.sh``, ``evaluate.sh``, ``reproduce-table*.sh``) only
call the modules of this package; the experiments' hyperparameters live once in ``configs/``
(TOML files of fairseq flags, read here with ``tomllib``).

- :mod:`.device`: whether the fairseq commands get ``--cpu`` (one decision for every driver)
- :mod:`.config`: load a profile (``configs/NAME.toml``) and a dataset (``configs/dataset-NAME.toml``)
- :mod:`.logs`: parse fairseq's training log, detect divergence
- :mod:`.train`: one training run (resume, FAIL marking)
- :mod:`.signals`, :mod:`.lock`: stop signals end the fairseq children; one driver per run folder
- :mod:`.evaluate`: checkpoint averaging, beam search, tokenised BLEU and sacreBLEU
- :mod:`.sweep`: the Table 1 / 9 / 10 loops
- :mod:`.tables`: aggregation into the paper's markdown tables
- :mod:`.plots`: Figure 1 (training loss and validation BLEU over updates)
"""

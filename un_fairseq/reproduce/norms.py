"""Names of the normalizers, kept free of torch/fairseq imports so that the scripts start fast.

They must equal ``un_fairseq.modules.NORM_TYPES`` / ``OFFLINE_NORM_TYPES`` and UN's default
momentum in ``un_fairseq.models.norm_args.NORM_DEFAULTS``; ``tests/test_reproduce.py`` checks it.
"""

NORM_TYPES = ("un", "layer", "rms", "power", "power_noscale", "batch", "mabn", "none")
OFFLINE_NORM_TYPES = ("un", "power_noscale", "batch", "mabn")
UN_DEFAULT_MOMENTUM = 0.9

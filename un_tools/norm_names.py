"""The names of the normalizers (``--norm-type``), in one place: the plugin's factory
(``un_fairseq.modules``) and the reproduction drivers both read them from here, and this module
imports nothing, so that the scripts start fast."""

#: Every normalizer of the paper's Table 1, by its ``--norm-type`` name.
NORM_TYPES = ("un", "layer", "rms", "power", "power_noscale", "batch", "mabn", "none")

#: Normalizers whose inference map is a fixed per-channel affine map (foldable).
OFFLINE_NORM_TYPES = ("un", "power_noscale", "batch", "mabn")

#: Normalizers that use batch statistics in training (they take ``sync_stats``).
BATCH_STAT_NORM_TYPES = ("un", "power", "power_noscale", "batch", "mabn")

#: UN's default momentum: the reference row of Table 10 (``--un-momentum``'s default reads it).
UN_DEFAULT_MOMENTUM = 0.9

"""The normalizers of the paper's Table 1, all called as ``norm(x, padding_mask=None)``;
their names and options: ``un_tools/norm_spec.py``."""

from un_tools.norm_spec import BATCH_STAT_NORM_TYPES, NORM_SPECS, NORM_TYPES, OFFLINE_NORM_TYPES

from .base import PaddingAwareNorm, padding_context
from .batch_norm import MaskedBatchNorm
from .batch_stats import BatchStatNorm
from .mabn import MABN
from .online_norms import LayerNorm, NoNorm, RMSNorm
from .power_norm import PowerNorm, group_scaling
from .registry import build_norm, norm_class, norm_type_of
from .unified_norm import UnifiedNorm

__all__ = [
    "BATCH_STAT_NORM_TYPES", "BatchStatNorm", "LayerNorm", "MABN", "MaskedBatchNorm", "NORM_SPECS",
    "NORM_TYPES", "NoNorm", "OFFLINE_NORM_TYPES", "PaddingAwareNorm", "PowerNorm", "RMSNorm",
    "UnifiedNorm", "build_norm", "group_scaling", "norm_class", "norm_type_of", "padding_context",
]

"""The normalizers of the paper's Table 1, all called as ``norm(x, padding_mask=None)``."""

from .base import PaddingAwareNorm, padding_context
from .batch_norm import MaskedBatchNorm
from .factory import BATCH_STAT_NORM_TYPES, NORM_TYPES, OFFLINE_NORM_TYPES, build_norm, norm_type_of
from .mabn import MABN
from .online_norms import LayerNorm, NoNorm, RMSNorm
from .power_norm import PowerNorm, group_scaling
from .unified_norm import UnifiedNorm

__all__ = [
    "BATCH_STAT_NORM_TYPES", "LayerNorm", "MABN", "MaskedBatchNorm", "NORM_TYPES", "NoNorm",
    "OFFLINE_NORM_TYPES", "PaddingAwareNorm", "PowerNorm", "RMSNorm", "UnifiedNorm", "build_norm",
    "group_scaling", "norm_type_of", "padding_context",
]

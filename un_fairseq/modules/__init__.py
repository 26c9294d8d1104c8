"""The normalizers of the paper's Table 1, all called as ``norm(x, padding_mask=None)``;
each declares its name and options on its class (``@register_norm``, ``registry.py``)."""

from .base import PaddingAwareNorm, padding_context
from .batch_norm import MaskedBatchNorm
from .batch_stats import BatchStatNorm
from .mabn import MABN
from .online_norms import LayerNorm, NoNorm, RMSNorm
from .power_norm import PowerNorm, group_scaling
from .registry import build_norm, norm_class, norm_type_of
from .unified_norm import UnifiedNorm

__all__ = [
    "BatchStatNorm", "LayerNorm", "MABN", "MaskedBatchNorm", "NoNorm", "PaddingAwareNorm", "PowerNorm",
    "RMSNorm", "UnifiedNorm", "build_norm", "group_scaling", "norm_class", "norm_type_of", "padding_context",
]

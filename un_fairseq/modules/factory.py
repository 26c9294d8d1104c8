"""One factory for every normalizer of the paper's Table 1, by name."""

from typing import Any, Dict

from torch import nn

from un_tools.norm_names import BATCH_STAT_NORM_TYPES, NORM_TYPES, OFFLINE_NORM_TYPES

from .batch_norm import MaskedBatchNorm
from .mabn import MABN
from .online_norms import LayerNorm, NoNorm, RMSNorm
from .power_norm import PowerNorm
from .unified_norm import UnifiedNorm


def build_norm(name: str, num_features: int, **options: Any) -> nn.Module:
    """Build the normalizer ``name`` over ``num_features`` channels.

    ``options`` go to its constructor (e.g. ``window``, ``warmup`` for ``un``); the ones it
    does not take are an error, so a typo cannot pass silently.
    """
    if name not in NORM_TYPES:
        raise ValueError(f"unknown norm type {name!r}: choose one of {', '.join(NORM_TYPES)}")
    if name == "un":
        return UnifiedNorm(num_features, **options)
    if name == "layer":
        return LayerNorm(num_features, **options)
    if name == "rms":
        return RMSNorm(num_features, **options)
    if name == "power":
        return PowerNorm(num_features, layer_scale=True, **options)
    if name == "power_noscale":
        return PowerNorm(num_features, layer_scale=False, **options)
    if name == "batch":
        return MaskedBatchNorm(num_features, **options)
    if name == "mabn":
        return MABN(num_features, **options)
    return NoNorm(num_features, **options)


def norm_type_of(module: nn.Module) -> str:
    """The factory name of a built normalizer (``power`` vs ``power_noscale`` included)."""
    if isinstance(module, PowerNorm):
        return "power" if module.layer_scale else "power_noscale"
    kinds: Dict[type, str] = {
        UnifiedNorm: "un", LayerNorm: "layer", RMSNorm: "rms", MaskedBatchNorm: "batch",
        MABN: "mabn", NoNorm: "none", nn.LayerNorm: "layer",
    }
    return kinds.get(type(module), type(module).__name__)

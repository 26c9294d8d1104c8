"""The plugin's side of the norm registry: ``--norm-type`` name -> built module.

The table itself (names, classes, options with defaults and checks) is
``un_tools/norm_spec.py``; here each spec's class name is resolved to the class and built.
"""

from typing import Any, Dict

from torch import nn

from un_tools.norm_spec import NORM_SPECS, NORM_TYPES

from .batch_norm import MaskedBatchNorm
from .mabn import MABN
from .online_norms import LayerNorm, NoNorm, RMSNorm
from .power_norm import PowerNorm
from .unified_norm import UnifiedNorm

#: The classes the specs name (``NormSpec.cls``).
CLASSES: Dict[str, type] = {
    cls.__name__: cls for cls in (UnifiedNorm, LayerNorm, RMSNorm, PowerNorm, MaskedBatchNorm, MABN, NoNorm)
}


def norm_class(name: str) -> type:
    """The class that ``--norm-type name`` builds."""
    return CLASSES[NORM_SPECS[name].cls]


def build_norm(name: str, num_features: int, **options: Any) -> nn.Module:
    """Build the normalizer ``name`` over ``num_features`` channels.

    ``options`` go to its constructor (e.g. ``window``, ``warmup`` for ``un``); the ones its
    spec does not list are an error, so a typo cannot pass silently.
    """
    if name not in NORM_SPECS:
        raise ValueError(f"unknown norm type {name!r}: choose one of {', '.join(NORM_TYPES)}")
    spec = NORM_SPECS[name]
    spec.check(**options)  # unknown or bad options fail here, naming the option
    return norm_class(name)(num_features, **spec.fixed, **options)


def norm_type_of(module: nn.Module) -> str:
    """The ``--norm-type`` name of a built normalizer (``power`` vs ``power_noscale`` included);
    fairseq's own LayerNorm counts as ``layer``."""
    for name, spec in NORM_SPECS.items():
        cls = CLASSES[spec.cls]
        if type(module) is cls and all(getattr(module, k) == v for k, v in spec.fixed.items()):
            return name
    if isinstance(module, nn.LayerNorm):
        return "layer"
    return type(module).__name__

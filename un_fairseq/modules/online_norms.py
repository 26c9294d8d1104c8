"""The online baselines: their inference output depends on each token, so they cannot be
folded. They accept (and ignore) a padding mask, like every normalizer here."""

from typing import Optional

import torch
from torch import Tensor, nn

from .base import SpecOptions
from .registry import register_norm
from .spec import EPS


@register_norm("layer", label="LN", row=1, doc="LayerNorm (Ba et al., 2016)", offline=False,
               options=(EPS,), stands_for=(nn.LayerNorm,))
class LayerNorm(SpecOptions, nn.LayerNorm):
    """Layer normalisation (Ba et al., 2016), as fairseq builds it; online."""

    def __init__(self, num_features: int, eps: float = EPS.default, **kwargs) -> None:
        super().__init__(num_features, eps=EPS.check(eps), **kwargs)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return super().forward(x)


@register_norm("rms", label="RMSNorm", row=2, doc="RMSNorm (Zhang & Sennrich, NeurIPS 2019)",
               offline=False, options=(EPS,))
class RMSNorm(SpecOptions, nn.Module):
    """Root-mean-square layer normalisation (Zhang & Sennrich, NeurIPS 2019); online.

    ``y = gamma * x / sqrt(mean_c x^2 + eps)``, the mean in float32. Shape: ``... x C``.
    No bias, as in the spec and the paper's formulation.
    """

    def __init__(self, num_features: int, eps: float = EPS.default) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = EPS.check(eps)
        self.weight = nn.Parameter(torch.ones(num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        inv_rms = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * inv_rms.to(x.dtype)) * self.weight.to(x.dtype)


@register_norm("none", label="NoNorm", row=3, doc="no normalisation (the identity)", offline=False)
class NoNorm(SpecOptions, nn.Module):
    """No normalisation: the identity (the paper's "w/o Norm" row)."""

    def __init__(self, num_features: int = 0) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return x

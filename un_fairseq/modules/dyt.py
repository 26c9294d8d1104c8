"""The normalisation-free rivals: an elementwise squashing function with learnable scalars in
place of each norm, followed by the per-channel affine map (docs/normalizers.md, "DyT" and
"Derf").

- DyT (Zhu, Chen, He, LeCun, Liu, *Transformers without Normalization*, CVPR 2025,
  arXiv:2503.10622): ``y = weight * tanh(alpha * x) + bias``;
- Derf (Chen, Lu, Zhu, Sun, Liu, *Stronger Normalization-Free Transformers*,
  arXiv:2512.10938): ``y = weight * erf(alpha * x + shift) + bias``.

``alpha`` and ``shift`` are one scalar each per layer (shape ``(1,)``), ``weight`` and
``bias`` per channel, named as in the authors' code. Shape: ``... x C`` (fairseq's
``T x B x C``), elementwise, so no statistic, no state and no padding mask. Online in the
spec's sense, but foldable: ``weight`` and ``bias`` fold into the linear layers that read the
output (``un-fuse``), and the twin built with ``elementwise_affine=False`` is what stays
(:meth:`ElementwiseNorm.split_affine`, the method by which ``fold.py`` recognises such a norm).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .base import SpecOptions
from .registry import register_norm
from .spec import Option

#: Set by ``un-fuse`` (``fold.folded_state``) in the checkpoints it writes; DyT and Derf share it.
AFFINE_FOLDED = Option(
    "elementwise_affine", "flag", True,
    "internal, set by un-fuse in the checkpoints it writes: weight and bias were folded into the "
    "linear layers that read the norm, which keeps only its elementwise op",
    flag="--norm-affine-folded", negated=True)
DYT_ALPHA = Option("alpha_init_value", "positive", 0.5, "initial alpha (one learnable scalar per layer)",
                   flag="--dyt-alpha-init")
DERF_ALPHA = Option("alpha_init_value", "positive", 0.5, "initial alpha (one learnable scalar per layer)",
                    flag="--derf-alpha-init")
DERF_SHIFT = Option("shift_init_value", "real", 0.0, "initial shift (one learnable scalar per layer)",
                    flag="--derf-shift-init")


class ElementwiseNorm(SpecOptions, nn.Module):
    """``y = weight * f(x) + bias`` for an elementwise ``f`` with scalar parameters (the
    subclass's :meth:`elementwise`); without ``weight`` and ``bias`` when built with
    ``elementwise_affine=False`` (a folded model). Computed in ``x``'s dtype."""

    def __init__(self, num_features: int, elementwise_affine: bool) -> None:
        super().__init__()
        self.num_features = num_features
        self.elementwise_affine = AFFINE_FOLDED.check(elementwise_affine)
        if self.elementwise_affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def elementwise(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        y = self.elementwise(x)
        if self.weight is None:
            return y
        return torch.addcmul(self.bias.to(y.dtype), y, self.weight.to(y.dtype))

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.constructor_options().items())
        return f"{self.num_features}, {options}"

    def split_affine(self) -> Tuple[nn.Module, Optional[Tuple[Tensor, Tensor]]]:
        """``(f, (weight, bias))``: a twin without ``weight`` and ``bias`` that computes ``f``
        with this norm's scalars, and the affine map that follows it (None when there is
        none), so that ``self(x) = weight * f(x) + bias``."""
        if not self.elementwise_affine:
            return self, None
        twin = type(self)(self.num_features, **{**self.constructor_options(), "elementwise_affine": False})
        twin.load_state_dict({k: v for k, v in self.state_dict().items() if k not in ("weight", "bias")})
        twin = twin.to(self.alpha).train(self.training)
        return twin, (self.weight.detach(), self.bias.detach())


@register_norm("dyt", label="DyT", row=9, doc="Dynamic Tanh (Zhu et al., CVPR 2025)", offline=False,
               options=(DYT_ALPHA, AFFINE_FOLDED))
class DyT(ElementwiseNorm):
    """Dynamic Tanh: ``y = weight * tanh(alpha * x) + bias``, ``alpha`` one learnable scalar
    (initialised to ``alpha_init_value``), ``weight`` 1, ``bias`` 0."""

    def __init__(self, num_features: int, alpha_init_value: float = DYT_ALPHA.default,
                 elementwise_affine: bool = AFFINE_FOLDED.default) -> None:
        super().__init__(num_features, elementwise_affine)
        self.alpha_init_value = DYT_ALPHA.check(alpha_init_value)
        self.alpha = nn.Parameter(torch.ones(1) * self.alpha_init_value)

    def elementwise(self, x: Tensor) -> Tensor:
        return torch.tanh(self.alpha.to(x.dtype) * x)


@register_norm("derf", label="Derf", row=10, doc="Dynamic erf (Chen et al., arXiv 2025)", offline=False,
               options=(DERF_ALPHA, DERF_SHIFT, AFFINE_FOLDED))
class Derf(ElementwiseNorm):
    """Dynamic erf: ``y = weight * erf(alpha * x + shift) + bias``, ``alpha`` and ``shift`` one
    learnable scalar each (initialised to ``alpha_init_value``, ``shift_init_value``),
    ``weight`` 1, ``bias`` 0."""

    def __init__(self, num_features: int, alpha_init_value: float = DERF_ALPHA.default,
                 shift_init_value: float = DERF_SHIFT.default,
                 elementwise_affine: bool = AFFINE_FOLDED.default) -> None:
        super().__init__(num_features, elementwise_affine)
        self.alpha_init_value = DERF_ALPHA.check(alpha_init_value)
        self.shift_init_value = DERF_SHIFT.check(shift_init_value)
        self.alpha = nn.Parameter(torch.ones(1) * self.alpha_init_value)
        self.shift = nn.Parameter(torch.ones(1) * self.shift_init_value)

    def elementwise(self, x: Tensor) -> Tensor:
        return torch.erf(torch.addcmul(self.shift.to(x.dtype), x, self.alpha.to(x.dtype)))

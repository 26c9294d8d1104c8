"""PowerNorm (Shen et al., "PowerNorm: Rethinking Batch Normalization in Transformers",
ICML 2020), with and without its group layer-scale.

As in the spec (``docs/normalizers.md``): an optional per-token group scaling
(``GroupScaling1D``), then division by the current quadratic mean during warmup and by its
running average ``phi`` after; the backward subtracts a running gradient estimate
``nu = (1 - alpha_b) * Gamma``. With the layer-scale (PN) the inference map depends on each
token, so it is online; without it (PN*, the paper's ``power_noscale``) it is offline.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .base import keep_if
from .batch_stats import BatchStatNorm, ForwardStats
from .registry import register_norm
from .spec import COUNT_PADDING, EPS, SYNC_STATS, Option, check_options, defaults

#: PN*'s options; PN also takes :data:`GROUPS`.
OPTIONS = (
    Option("warmup", "warmup", 4000,
           "warmup, counted in training forward calls: W/K updates with --update-freq K; as in "
           "the PowerNorm recipe it defaults to the learning-rate warmup",
           flag="--pn-warmup", flag_default=None, fallback="warmup_updates"),
    Option("alpha_fwd", "momentum", 0.9, "forward momentum, in (0, 1)", flag="--pn-alpha-fwd"),
    Option("alpha_bkw", "momentum", 0.9, "backward momentum, in (0, 1)", flag="--pn-alpha-bkw"),
    EPS,
    COUNT_PADDING,
    SYNC_STATS,
)
GROUPS = Option("num_groups", "groups", 4, "groups of the layer-scale (the model passes its "
                "attention heads)", from_model="attention_heads")
_DEFAULT = defaults((GROUPS, *OPTIONS))
GROUP_SCALING_EPS = 1e-5


def group_scaling(x: Tensor, num_groups: int) -> Tensor:
    """``x / sqrt(mean_group x^2 + 1e-5)`` per token and group of ``C / G`` channels.

    Shape: ``... x C`` in and out; the mean is taken in float32. Plain autograd.
    """
    *lead, C = x.shape
    groups = x.reshape(*lead, num_groups, C // num_groups)
    moment2 = groups.float().pow(2).mean(-1, keepdim=True)
    return (groups * torch.rsqrt(moment2 + GROUP_SCALING_EPS).to(x.dtype)).reshape(x.shape)


@register_norm("power_noscale", label="PN*", row=7, doc="the paper's PN*: PowerNorm without its "
               "layer-scale", offline=True, batch_stats=True, options=OPTIONS, fixed={"layer_scale": False})
@register_norm("power", label="PN", row=6, doc="PowerNorm (Shen et al., ICML 2020), with its layer-scale",
               offline=False, batch_stats=True, options=(GROUPS, *OPTIONS), fixed={"layer_scale": True})
class PowerNorm(BatchStatNorm):
    """PowerNorm (Shen et al., ICML 2020); online with ``layer_scale`` (PN), offline without
    it (PN*).

    Args (defaults, checks and flags: :data:`OPTIONS`, :data:`GROUPS`): ``num_groups`` of the layer-scale,
    ``warmup`` ``W``, ``alpha_fwd``, ``alpha_bkw``, ``eps``, ``layer_scale``,
    ``count_padding``, ``sync_stats`` (``modules/sync.py``).

    Shape: x ``T x B x C`` (any ``... x C`` without a mask), padding_mask ``B x T``.
    Buffers: ``running_phi`` (C, init 1), ``grad_ema`` (C, the spec's Gamma), ``num_steps``.
    """

    stat_buffers = ("running_phi", "grad_ema")

    def __init__(
        self,
        num_features: int,
        num_groups: int = _DEFAULT.num_groups,
        warmup: int = _DEFAULT.warmup,
        alpha_fwd: float = _DEFAULT.alpha_fwd,
        alpha_bkw: float = _DEFAULT.alpha_bkw,
        eps: float = _DEFAULT.eps,
        layer_scale: bool = True,
        count_padding: bool = _DEFAULT.count_padding,
        sync_stats: bool = _DEFAULT.sync_stats,
    ) -> None:
        super().__init__()
        if layer_scale and (isinstance(num_groups, bool) or not isinstance(num_groups, int)
                            or num_groups < 1 or num_features % num_groups):
            raise ValueError(
                f"num_groups={num_groups!r} is not allowed: it must be >= 1 and divide "
                f"num_features={num_features}"
            )
        o = check_options(type(self).__name__, OPTIONS, dict(
            warmup=warmup, alpha_fwd=alpha_fwd, alpha_bkw=alpha_bkw, eps=eps,
            count_padding=count_padding, sync_stats=sync_stats))
        self.num_features = num_features
        self.num_groups = num_groups
        for name, value in o.items():
            setattr(self, name, value)
        self.layer_scale = bool(layer_scale)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_phi", torch.ones(num_features))
        self.register_buffer("grad_ema", torch.zeros(num_features))

    @property
    def offline(self) -> bool:
        return not self.layer_scale

    def inference_scale(self) -> Tuple[Tensor, Tensor]:
        """The per-channel part of the inference map, ``y = a * GS(x) + b``."""
        return self.weight.float() * torch.rsqrt(self.running_phi + self.eps), self.bias.float()

    def normalize(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        dtype = x.dtype
        if self.layer_scale:  # a per-token statistic: kept in float32 like the others
            x = group_scaling(x.float(), self.num_groups)
        return super().normalize(x, padding_mask).to(dtype)

    def forward_statistics(self, s: Tensor, ok: Tensor, t: int) -> ForwardStats:
        """Spec PN steps 3-4: divide by ``s`` during warmup, by ``phi`` after; update ``phi``;
        ``dx`` is divided by the current batch's ``sqrt(s + eps)``."""
        phi = self.running_phi
        sigma2 = s if t <= self.warmup else phi.clone()
        new_phi = phi * (t - 1) / t + s / t if t < self.warmup else phi
        new_phi = self.alpha_fwd * new_phi + (1 - self.alpha_fwd) * s
        phi.copy_(keep_if(ok, new_phi, phi))
        return ForwardStats(sigma2, out_var=s)

    def backward_coefficient(self, gz: Tensor, ok: Tensor, t: int, stats: ForwardStats) -> Tensor:
        """Spec PN step 5: ``c = nu = (1 - alpha_b) * Gamma``, then ``Gamma += mean(gh * z)``
        with ``gh = g - nu z`` (``mean(z^2) = s / (sigma2 + eps)``)."""
        nu = (1 - self.alpha_bkw) * self.grad_ema
        delta = gz - nu * stats.inv_std * stats.inv_std * stats.s
        ok = ok & torch.isfinite(delta).all()
        self.grad_ema.copy_(keep_if(ok, self.grad_ema + delta, self.grad_ema))
        return nu

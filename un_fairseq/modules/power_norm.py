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

from . import loss_scale
from .base import StepCountedNorm, as_rows, keep_if
from .row_sums import RowGrad
from .options import check_eps, check_momentum, check_warmup
from .sync import global_quadratic_mean, stats_group, summed

GROUP_SCALING_EPS = 1e-5


def group_scaling(x: Tensor, num_groups: int) -> Tensor:
    """``x / sqrt(mean_group x^2 + 1e-5)`` per token and group of ``C / G`` channels.

    Shape: ``... x C`` in and out; the mean is taken in float32. Plain autograd.
    """
    *lead, C = x.shape
    groups = x.reshape(*lead, num_groups, C // num_groups)
    moment2 = groups.float().pow(2).mean(-1, keepdim=True)
    return (groups * torch.rsqrt(moment2 + GROUP_SCALING_EPS).to(x.dtype)).reshape(x.shape)


class PowerNorm(StepCountedNorm):
    """PowerNorm (Shen et al., ICML 2020); online with ``layer_scale`` (PN), offline without
    it (PN*).

    Shape: x ``T x B x C`` (any ``... x C`` without a mask), padding_mask ``B x T``.
    Buffers: ``running_phi`` (C, init 1), ``grad_ema`` (C, the spec's Gamma), ``num_steps``.
    ``sync_stats=True`` shares the batch statistics across torch.distributed's default group
    when it is initialised (``modules/sync.py``).
    """

    stat_buffers = ("running_phi", "grad_ema")

    def __init__(
        self,
        num_features: int,
        num_groups: int = 4,
        warmup: int = 4000,
        alpha_fwd: float = 0.9,
        alpha_bkw: float = 0.9,
        eps: float = 1e-5,
        layer_scale: bool = True,
        count_padding: bool = False,
        sync_stats: bool = False,
    ) -> None:
        super().__init__()
        if layer_scale and (num_groups < 1 or num_features % num_groups):
            raise ValueError(
                f"num_groups={num_groups!r} is not allowed: it must be >= 1 and divide "
                f"num_features={num_features}"
            )
        self.num_features = num_features
        self.num_groups = num_groups
        self.warmup = check_warmup("warmup", warmup)
        self.alpha_fwd = check_momentum("alpha_fwd", alpha_fwd)
        self.alpha_bkw = check_momentum("alpha_bkw", alpha_bkw)
        self.eps = check_eps("eps", eps)
        self.layer_scale = bool(layer_scale)
        self.count_padding = bool(count_padding)
        self.sync_stats = bool(sync_stats)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_phi", torch.ones(num_features))
        self.register_buffer("grad_ema", torch.zeros(num_features))

    def extra_repr(self) -> str:
        groups = f"num_groups={self.num_groups}, " if self.layer_scale else ""
        return (
            f"{self.num_features}, {groups}warmup={self.warmup}, alpha_fwd={self.alpha_fwd}, "
            f"alpha_bkw={self.alpha_bkw}, eps={self.eps}, layer_scale={self.layer_scale}, "
            f"count_padding={self.count_padding}, sync_stats={self.sync_stats}"
        )

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
        if not self.training:
            return self.inference_affine(x).to(dtype)
        rows, keep, n = as_rows(x, padding_mask, self.count_padding)
        y = _PowerNormFunction.apply(rows, self.weight, self.bias, self, keep, n, self._next_step(),
                                     stats_group(self.sync_stats))
        return y.view(x.shape).to(dtype)


class _PowerNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pn: PowerNorm, keep, n, t: int, group):
        s, n = global_quadratic_mean(x, keep, n, group)
        ok = torch.isfinite(s).all()
        phi = pn.running_phi
        inv_fwd = torch.rsqrt((s if t <= pn.warmup else phi) + pn.eps)
        y = torch.addcmul(bias.to(x.dtype), x, (weight.float() * inv_fwd).to(x.dtype))
        new_phi = phi * (t - 1) / t + s / t if t < pn.warmup else phi
        new_phi = pn.alpha_fwd * new_phi + (1 - pn.alpha_fwd) * s
        phi.copy_(keep_if(ok, new_phi, phi))
        pn._count_step(ok)

        ctx.save_for_backward(x, keep, inv_fwd, torch.rsqrt(s + pn.eps), s, weight, ok)
        ctx.pn, ctx.n, ctx.group = pn, n, group
        return y

    @staticmethod
    def backward(ctx, dy):
        x, keep, inv_fwd, inv_s, s, weight, ok = ctx.saved_tensors
        pn = ctx.pn
        gamma = weight.float()
        nu = (1 - pn.alpha_bkw) * pn.grad_ema
        scale = loss_scale.current()  # keep grad_ema in unscaled units (see loss_scale.py)
        grad = RowGrad(dy, x, keep, ctx.n, gamma, inv_fwd, inv_s)
        # mean(gh * z) with gh = g - nu z and z = x * inv_fwd, mean(x^2) being s
        mean_gz = summed(grad.mean_gz, ctx.group)
        gz = mean_gz if loss_scale.is_one(scale) else mean_gz / scale
        delta = gz - nu * inv_fwd * inv_fwd * s
        ok = ok & torch.isfinite(delta).all()
        pn.grad_ema.copy_(keep_if(ok, pn.grad_ema + delta, pn.grad_ema))
        dx = grad.dx(nu if loss_scale.is_one(scale) else nu * scale)
        return dx, grad.dgamma().to(weight.dtype), grad.sum_dy.to(weight.dtype), None, None, None, None, None

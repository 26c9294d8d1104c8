"""One training forward and backward for the normalizers that divide by a per-channel
quadratic-mean statistic of the batch (no centring): UN, MABN and PowerNorm (PN, PN*).

Spec (``docs/normalizers.md``): each takes ``s = mean over rows of x^2`` (UN step 2), picks the
variance ``sigma2`` its forward divides by, ``z = x / sqrt(sigma2 + eps)``,
``y = gamma * z + beta`` (MABN: ``gamma * r * z + beta``); its backward takes the gradient
statistic ``gz = mean over rows of g * z`` with ``g = dy * gamma * r``, picks a coefficient
``c`` from its gradient state and returns ``dx = (g - c * z) * out_scale``,
``dgamma = sum(dy * r * z)``, ``dbeta = sum(dy)``. What differs between the norms is only
*which* ``sigma2`` and *which* ``c`` (the smoothing); a subclass of :class:`BatchStatNorm`
says so in two hooks, which also update its state:

- :meth:`BatchStatNorm.forward_statistics` ``(s, ok, t) -> ForwardStats``;
- :meth:`BatchStatNorm.backward_coefficient` ``(gz, ok, t, stats) -> c``.

Everything else is here once: the statistics over the data-parallel group (``sync.py``), the
non-finite guard, the step count, the loss scale (``loss_scale.py``: statistics stay in
unscaled units), the gradient compensation ``r`` (:func:`compensation`) and the sums of
``row_sums.py`` (fused CPU float32 kernels, or plain ops elsewhere).

Batch norm is not here: its gradient flows through its statistics (spec: "full autograd"),
so it has no hand-written backward.
"""

from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from . import loss_scale
from .base import StepCountedNorm, as_rows
from .row_sums import RowGrad, scale_shift
from .sync import global_quadratic_mean, stats_group, summed

# MABN's renormalisation, as released with UN: r = 1 for this many steps at least, then
# clamped to [1/5, 5] (spec, UN forward step 7).
R_WARMUP_MIN = 1000
R_MIN, R_MAX = 0.2, 5.0


def compensation(sigma2: Tensor, running_var: Tensor, eps: float, t: int, warmup: int) -> Optional[Tensor]:
    """The gradient compensation ``r = sqrt(sigma2 + eps) / sqrt(running_var + eps)``,
    clamped to ``[0.2, 5]``; None (for 1) while ``t <= max(1000, W)``. Shapes ``(C,)``."""
    if t <= max(R_WARMUP_MIN, warmup):
        return None
    return (torch.sqrt(sigma2 + eps) / torch.sqrt(running_var + eps)).clamp(R_MIN, R_MAX)


@dataclass
class ForwardStats:
    """What a norm's forward hook chose, all float32 ``(C,)``.

    ``sigma2``: the variance ``z`` is divided by. ``r``: the gradient compensation (None for
    1). ``r_in_forward``: ``r`` also multiplies the output (MABN). ``out_var``: the variance
    ``dx`` is divided by, when not ``sigma2`` (PowerNorm: the current batch's ``s``).
    ``skip``: UN's outlier decision, for its backward (a bool, or a 0-dim bool tensor).
    ``s`` and ``inv_std = 1 / sqrt(sigma2 + eps)`` are filled in by the core.
    """

    sigma2: Tensor
    r: Optional[Tensor] = None
    r_in_forward: bool = False
    out_var: Optional[Tensor] = None
    skip: Union[bool, Tensor] = False
    s: Optional[Tensor] = None
    inv_std: Optional[Tensor] = None


class BatchStatNorm(StepCountedNorm):
    """Base class of UN, MABN and PowerNorm: the training call through :class:`BatchStatFunction`.

    Subclasses set ``weight``, ``bias``, ``eps``, ``count_padding``, ``sync_stats`` and
    implement the two hooks and ``inference_scale``.

    Shape: x ``T x B x C`` (any ``... x C`` without a mask), padding_mask ``B x T``.
    """

    def normalize(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        if not self.training:
            return self.inference_affine(x)
        rows, keep, n = as_rows(x, padding_mask, self.count_padding)
        t = self._next_step()
        group = stats_group(self.sync_stats)
        y = BatchStatFunction.apply(rows, self.weight, self.bias, self, keep, n, t, group)
        return y.view(x.shape)

    def forward_statistics(self, s: Tensor, ok: Tensor, t: int) -> ForwardStats:
        """Update the forward state from ``s`` (kept unchanged where ``ok`` is False) and
        choose ``sigma2`` and ``r``."""
        raise NotImplementedError

    def backward_coefficient(self, gz: Tensor, ok: Tensor, t: int, stats: ForwardStats) -> Tensor:
        """Update the gradient state from ``gz`` (unscaled; unchanged unless it and ``ok``
        are finite) and return ``c``, the coefficient of ``z`` in ``dx``."""
        raise NotImplementedError


class BatchStatFunction(torch.autograd.Function):
    """Training forward and backward of a :class:`BatchStatNorm` on rows ``N x C``."""

    @staticmethod
    def forward(ctx, x, weight, bias, norm: BatchStatNorm, keep, n, t: int, group):
        s, n = global_quadratic_mean(x, keep, n, group)  # spec UN step 2
        ok = torch.isfinite(s).all()
        stats = norm.forward_statistics(s, ok, t)
        stats.s = s
        stats.inv_std = torch.rsqrt(stats.sigma2 + norm.eps)
        gain = weight.float()
        if stats.r_in_forward and stats.r is not None:
            gain = gain * stats.r
        y = scale_shift(x, gain * stats.inv_std, bias.float())
        norm.count_step(ok)

        ctx.save_for_backward(x, keep, weight, ok)
        ctx.norm, ctx.stats, ctx.n, ctx.t, ctx.group = norm, stats, n, t, group
        return y

    @staticmethod
    def backward(ctx, dy):
        x, keep, weight, ok = ctx.saved_tensors
        stats = ctx.stats
        gain = weight.float() if stats.r is None else weight.float() * stats.r
        out_scale = stats.inv_std if stats.out_var is None else torch.rsqrt(stats.out_var + ctx.norm.eps)
        grad = RowGrad(dy, x, keep, ctx.n, gain, stats.inv_std, out_scale)
        gz = summed(grad.mean_gz, ctx.group)  # mean over real rows of g * z, in units of dy
        scale = loss_scale.current()  # dy = S * the true gradient: the statistics stay unscaled
        if not loss_scale.is_one(scale):
            gz = gz / scale
        c = ctx.norm.backward_coefficient(gz, ok, ctx.t, stats)
        if not loss_scale.is_one(scale):
            c = c * scale
        dx = grad.dx(c)
        dgamma = grad.dgamma(stats.r).to(weight.dtype)
        return dx, dgamma, grad.sum_dy.to(weight.dtype), None, None, None, None, None

"""Unified Normalization (Yang et al., "Unified Normalization for Accelerating and
Stabilizing Transformers", ACM MM 2022): offline, foldable at inference.

Semantics are the authors' released ``UN1d`` (see ``docs/normalizers.md``, the spec):
the forward normalises by the geometric mean of the last ``M`` quadratic means (paper
Eq. 9-11), the backward by a simple moving average of the last ``M`` gradient statistics
smoothed by an EMA (Eq. 12-14), with the release's gradient compensation ``r`` (from MABN)
and its optional outlier filtration (Eq. 15-18, with the release's scalar threshold).

Differences from the release, none in the arithmetic: padding tokens take part in no
statistic unless ``count_padding=True``; no host sync per call; no copy of the activations;
a batch with non-finite statistics changes no state.
"""

from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from . import loss_scale
from .base import StepCountedNorm, as_rows, keep_if
from .row_sums import RowGrad
from .options import check_eps, check_momentum, check_warmup, check_window
from .sync import global_quadratic_mean, stats_group, summed

# The release keeps r = 1 for this many steps at least, then clamps it to [1/5, 5].
R_WARMUP_MIN = 1000
R_MIN, R_MAX = 0.2, 5.0


def geometric_mean(ring: Tensor) -> Tensor:
    """Per-channel geometric mean of a ring ``M x C``, as ``exp(mean(log))`` (stable)."""
    return ring.log().mean(0).exp()


class UnifiedNorm(StepCountedNorm):
    """Unified Normalization (Yang et al., ACM MM 2022); offline: folds into the next linear.

    Args:
        num_features: ``C``.
        window: ``M``, the number of recent batches averaged; an int or a pair
            ``(forward, backward)``.
        warmup: ``W``, steps that use the current batch's statistics only.
        momentum: ``alpha``, shared by ``running_var`` and the gradient EMA ``psi``.
        eps: added to every variance.
        outlier_filtration: skip the moving averages for a batch whose statistics are
            outliers (the authors turn it on for vision, off for NMT).
        count_padding: count padding tokens in the statistics, as the released NMT code did.
        sync_stats: share the batch statistics (forward and backward) across the ranks of
            torch.distributed's default group, when it is initialised: K ranks then compute
            what one process computes on their concatenated batches (``modules/sync.py``).
        fp_geometric_mean, bp_moving_average, bp_momentum: switch off to get the paper's
            ablations (Table 9): ``sigma2 = s_t``; ``m = gz``; ``psi = m``.

    Shape:
        - x: ``T x B x C`` (any ``... x C`` without a mask); padding_mask: ``B x T``.
        - output: same shape and dtype as ``x``; statistics and buffers are float32.

    Buffers: ``running_var`` (C), ``psi`` (C), ``omega`` (M_f x C), ``phi`` (M_b x C),
    ``num_steps`` and ``num_skips`` (int64 scalars).
    """

    stat_buffers = ("running_var", "psi", "omega", "phi")

    def __init__(
        self,
        num_features: int,
        window: Union[int, Tuple[int, int]] = 4,
        warmup: int = 4000,
        momentum: float = 0.9,
        eps: float = 1e-5,
        outlier_filtration: bool = False,
        count_padding: bool = False,
        fp_geometric_mean: bool = True,
        bp_moving_average: bool = True,
        bp_momentum: bool = True,
        sync_stats: bool = False,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.fwd_window, self.bwd_window = check_window("window", window)
        self.warmup = check_warmup("warmup", warmup)
        self.momentum = check_momentum("momentum", momentum)
        self.eps = check_eps("eps", eps)
        self.outlier_filtration = bool(outlier_filtration)
        self.count_padding = bool(count_padding)
        self.fp_geometric_mean = bool(fp_geometric_mean)
        self.bp_moving_average = bool(bp_moving_average)
        self.bp_momentum = bool(bp_momentum)
        self.sync_stats = bool(sync_stats)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("psi", torch.zeros(num_features))
        self.register_buffer("omega", torch.zeros(self.fwd_window, num_features))
        self.register_buffer("phi", torch.zeros(self.bwd_window, num_features))
        self.register_buffer("num_skips", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, window=({self.fwd_window}, {self.bwd_window}), "
            f"warmup={self.warmup}, momentum={self.momentum}, eps={self.eps}, "
            f"outlier_filtration={self.outlier_filtration}, count_padding={self.count_padding}, "
            f"fp_geometric_mean={self.fp_geometric_mean}, "
            f"bp_moving_average={self.bp_moving_average}, bp_momentum={self.bp_momentum}, "
            f"sync_stats={self.sync_stats}"
        )

    def inference_scale(self) -> Tuple[Tensor, Tensor]:
        """The inference map ``y = a * x + b`` as float32 ``(a, b)`` (paper Algorithm 1)."""
        a = self.weight.float() * torch.rsqrt(self.running_var + self.eps)
        return a, self.bias.float()

    def normalize(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        if not self.training:
            return self.inference_affine(x)
        rows, keep, n = as_rows(x, padding_mask, self.count_padding)
        t = self._next_step()
        group = stats_group(self.sync_stats)
        y = _UnifiedNormFunction.apply(rows, self.weight, self.bias, self, keep, n, t, group)
        return y.view(x.shape)


    # -- the forward statistics, spec steps 2-7 ------------------------------------------

    def _forward_statistics(self, s: Tensor, ok: Tensor, t: int):
        """Update ``omega`` and pick ``sigma2``; return ``(sigma2, r, skip)``.

        ``skip`` is a Python bool when it is known on the host, else a 0-dim bool tensor
        (the outlier test), so that no branch waits on the device. ``r`` is None for 1.
        """
        M, W, omega = self.fwd_window, self.warmup, self.omega
        slot = t % M
        if self.outlier_filtration:
            v = omega.sqrt().var()  # scalar, unbiased, before this batch enters the ring
        omega[slot] = keep_if(ok, s, omega[slot])

        skip: Union[bool, Tensor] = M == 1
        if self.outlier_filtration and t >= W and not skip:
            am, gm = omega.mean(0), geometric_mean(omega)
            skip = ((am - gm) > M * v).any() & ok
            omega[slot] = torch.where(skip, self.running_var, omega[slot])
            self.num_skips.add_(skip.long())

        if t <= M or t < W or skip is True or not self.fp_geometric_mean:
            sigma2 = s
        elif skip is False:
            sigma2 = geometric_mean(omega)
        else:
            sigma2 = torch.where(skip, s, geometric_mean(omega))

        r = None
        if t > max(R_WARMUP_MIN, W) and skip is not True:
            r = (torch.sqrt(sigma2 + self.eps) / torch.sqrt(self.running_var + self.eps)).clamp(R_MIN, R_MAX)
            if skip is not False:
                r = torch.where(skip, torch.ones_like(r), r)
        return sigma2, r, skip

    # -- the backward statistics, spec backward steps 2-5 --------------------------------

    def _backward_statistics(self, gz: Tensor, ok: Tensor, t: int, skip) -> Tensor:
        """Update ``phi`` and ``psi``; return ``c``, the coefficient of ``z`` in ``dx``."""
        M, W, phi, psi = self.bwd_window, self.warmup, self.phi, self.psi
        slot = t % M
        if skip is False:
            entry = gz
        elif skip is True:
            entry = psi
        else:
            entry = torch.where(skip, psi, gz)
        phi[slot] = keep_if(ok, entry, phi[slot])

        if t <= M or t < W or skip is True or not self.bp_moving_average:
            m = gz
        elif skip is False:
            m = phi.mean(0)
        else:
            m = torch.where(skip, gz, phi.mean(0))

        new_psi = self.momentum * psi + (1 - self.momentum) * m if self.bp_momentum else m
        psi.copy_(keep_if(ok, new_psi, psi))
        if skip is False:
            return new_psi
        if skip is True:
            return m
        return torch.where(skip, m, new_psi)


class _UnifiedNormFunction(torch.autograd.Function):
    """Training forward and backward of :class:`UnifiedNorm` on rows ``N x C``."""

    @staticmethod
    def forward(ctx, x, weight, bias, un: UnifiedNorm, keep, n, t: int, group):
        s, n = global_quadratic_mean(x, keep, n, group)  # quadratic mean, spec step 2
        ok = torch.isfinite(s).all()
        sigma2, r, skip = un._forward_statistics(s, ok, t)
        inv_std = torch.rsqrt(sigma2 + un.eps)
        y = torch.addcmul(bias.to(x.dtype), x, (weight.float() * inv_std).to(x.dtype))
        new_var = un.momentum * un.running_var + (1 - un.momentum) * sigma2
        un.running_var.copy_(keep_if(ok, new_var, un.running_var))
        un._count_step(ok)

        ctx.save_for_backward(x, keep, inv_std, weight, r, ok)
        ctx.un, ctx.n, ctx.t, ctx.skip, ctx.group = un, n, t, skip, group
        return y

    @staticmethod
    def backward(ctx, dy):
        x, keep, inv_std, weight, r, ok = ctx.saved_tensors
        un = ctx.un
        gamma_r = weight.float() if r is None else weight.float() * r
        grad = RowGrad(dy, x, keep, ctx.n, gamma_r, inv_std, inv_std)
        gz = summed(grad.mean_gz, ctx.group)  # mean over real rows of g * z, in units of dy
        scale = loss_scale.current()  # dy = S * the true gradient: the statistics stay unscaled
        if not loss_scale.is_one(scale):
            gz = gz / scale
        ok = ok & torch.isfinite(gz).all()
        c = un._backward_statistics(gz, ok, ctx.t, ctx.skip)
        if not loss_scale.is_one(scale):
            c = c * scale
        dx = grad.dx(c)
        return dx, grad.dgamma(r).to(weight.dtype), grad.sum_dy.to(weight.dtype), None, None, None, None, None

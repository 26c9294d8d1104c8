"""Moving-average batch normalisation (Yan et al., "Towards Stabilizing Batch Statistics in
Backward Propagation of Batch Normalization", ICLR 2020): offline, foldable at inference.

As in the spec (``docs/normalizers.md``): no mean subtraction; the forward divides by
the arithmetic mean of the last ``M`` quadratic means, the backward subtracts the mean of
the last ``M`` gradient statistics; the renormalisation factor ``r`` multiplies the forward
as a constant. Defaults are the released ones (``real_B / B = 32 / 2`` -> window 16,
warmup 100, momentum 0.98).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from . import loss_scale
from .base import StepCountedNorm, as_rows, keep_if
from .row_sums import RowGrad
from .options import check_eps, check_momentum, check_warmup, check_window
from .sync import global_quadratic_mean, stats_group, summed
from .unified_norm import R_MAX, R_MIN, R_WARMUP_MIN


class MABN(StepCountedNorm):
    """Moving-average batch norm (Yan et al., ICLR 2020); offline: folds into the next linear.

    Shape: x ``T x B x C`` (any ``... x C`` without a mask), padding_mask ``B x T``.
    Buffers: ``running_var`` (C), ``omega`` and ``phi`` (M x C), ``num_steps``.
    ``sync_stats=True`` shares the batch statistics across torch.distributed's default group
    when it is initialised (``modules/sync.py``).
    """

    stat_buffers = ("running_var", "omega", "phi")

    def __init__(
        self,
        num_features: int,
        window: int = 16,
        warmup: int = 100,
        momentum: float = 0.98,
        eps: float = 1e-5,
        count_padding: bool = False,
        sync_stats: bool = False,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.window = check_window("window", window)[0]
        self.warmup = check_warmup("warmup", warmup)
        self.momentum = check_momentum("momentum", momentum)
        self.eps = check_eps("eps", eps)
        self.count_padding = bool(count_padding)
        self.sync_stats = bool(sync_stats)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("omega", torch.zeros(self.window, num_features))
        self.register_buffer("phi", torch.zeros(self.window, num_features))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, window={self.window}, warmup={self.warmup}, "
            f"momentum={self.momentum}, eps={self.eps}, count_padding={self.count_padding}, "
            f"sync_stats={self.sync_stats}"
        )

    def inference_scale(self) -> Tuple[Tensor, Tensor]:
        """The inference map ``y = a * x + b`` as float32 ``(a, b)``."""
        return self.weight.float() * torch.rsqrt(self.running_var + self.eps), self.bias.float()

    def normalize(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        if not self.training:
            return self.inference_affine(x)
        rows, keep, n = as_rows(x, padding_mask, self.count_padding)
        y = _MABNFunction.apply(rows, self.weight, self.bias, self, keep, n, self._next_step(),
                                stats_group(self.sync_stats))
        return y.view(x.shape)


    def _uses_current_batch(self, t: int) -> bool:
        return t <= self.window or t < self.warmup


class _MABNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, mabn: MABN, keep, n, t: int, group):
        s, n = global_quadratic_mean(x, keep, n, group)
        ok = torch.isfinite(s).all()
        slot = t % mabn.window
        mabn.omega[slot] = keep_if(ok, s, mabn.omega[slot])
        sigma2 = s if mabn._uses_current_batch(t) else mabn.omega.mean(0)
        inv_std = torch.rsqrt(sigma2 + mabn.eps)
        gamma_r = weight.float()
        r = None
        if t > max(R_WARMUP_MIN, mabn.warmup):
            r = (torch.sqrt(sigma2 + mabn.eps) / torch.sqrt(mabn.running_var + mabn.eps)).clamp(R_MIN, R_MAX)
            gamma_r = gamma_r * r
        y = torch.addcmul(bias.to(x.dtype), x, (gamma_r * inv_std).to(x.dtype))
        new_var = mabn.momentum * mabn.running_var + (1 - mabn.momentum) * sigma2
        mabn.running_var.copy_(keep_if(ok, new_var, mabn.running_var))
        mabn._count_step(ok)

        ctx.save_for_backward(x, keep, inv_std, weight, r, ok)
        ctx.mabn, ctx.n, ctx.t, ctx.group = mabn, n, t, group
        return y

    @staticmethod
    def backward(ctx, dy):
        x, keep, inv_std, weight, r, ok = ctx.saved_tensors
        mabn, t = ctx.mabn, ctx.t
        gamma_r = weight.float() if r is None else weight.float() * r
        grad = RowGrad(dy, x, keep, ctx.n, gamma_r, inv_std, inv_std)
        gz = summed(grad.mean_gz, ctx.group)
        scale = loss_scale.current()  # keep phi in unscaled units (see loss_scale.py)
        if not loss_scale.is_one(scale):
            gz = gz / scale
        ok = ok & torch.isfinite(gz).all()
        slot = t % mabn.window
        mabn.phi[slot] = keep_if(ok, gz, mabn.phi[slot])
        psi = gz if mabn._uses_current_batch(t) else mabn.phi.mean(0)
        if not loss_scale.is_one(scale):
            psi = psi * scale
        dx = grad.dx(psi)
        return dx, grad.dgamma(r).to(weight.dtype), grad.sum_dy.to(weight.dtype), None, None, None, None, None

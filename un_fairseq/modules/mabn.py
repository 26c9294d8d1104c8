"""Moving-average batch normalisation (Yan et al., "Towards Stabilizing Batch Statistics in
Backward Propagation of Batch Normalization", ICLR 2020): offline, foldable at inference.

As in the spec (``docs/normalizers.md``): no mean subtraction; the forward divides by
the arithmetic mean of the last ``M`` quadratic means, the backward subtracts the mean of
the last ``M`` gradient statistics; the renormalisation factor ``r`` multiplies the forward
as a constant. Defaults (:data:`OPTIONS`) are the released ones (the window is the
release's ``real_B / B``).
"""

from typing import Tuple

import torch
from torch import Tensor, nn

from .base import keep_if
from .batch_stats import BatchStatNorm, ForwardStats, compensation
from .registry import register_norm
from .spec import COUNT_PADDING, EPS, SYNC_STATS, Option, check_options, defaults

OPTIONS = (
    Option("window", "window", 16, "window (the release's real_B / B)", flag="--mabn-window"),
    Option("warmup", "warmup", 100,
           "warmup, counted in training forward calls: W/K updates with --update-freq K",
           flag="--mabn-warmup"),
    Option("momentum", "momentum", 0.98, "running_var momentum, in (0, 1)", flag="--mabn-momentum"),
    EPS,
    COUNT_PADDING,
    SYNC_STATS,
)
_DEFAULT = defaults(OPTIONS)


@register_norm("mabn", label="MABN", row=5, doc="moving-average batch norm (Yan et al., ICLR 2020)",
               offline=True, batch_stats=True, options=OPTIONS)
class MABN(BatchStatNorm):
    """Moving-average batch norm (Yan et al., ICLR 2020); offline: folds into the next linear.

    Args (defaults, checks and flags: :data:`OPTIONS`): ``window`` ``M``, ``warmup``
    ``W``, ``momentum`` of ``running_var``, ``eps``, ``count_padding``, ``sync_stats`` (share
    the batch statistics across torch.distributed's default group when it is initialised,
    ``modules/sync.py``).

    Shape: x ``T x B x C`` (any ``... x C`` without a mask), padding_mask ``B x T``.
    Buffers: ``running_var`` (C), ``omega`` and ``phi`` (M x C), ``num_steps``.
    """

    stat_buffers = ("running_var", "omega", "phi")

    def __init__(
        self,
        num_features: int,
        window: int = _DEFAULT.window,
        warmup: int = _DEFAULT.warmup,
        momentum: float = _DEFAULT.momentum,
        eps: float = _DEFAULT.eps,
        count_padding: bool = _DEFAULT.count_padding,
        sync_stats: bool = _DEFAULT.sync_stats,
    ) -> None:
        super().__init__()
        o = check_options(type(self).__name__, OPTIONS, dict(
            window=window, warmup=warmup, momentum=momentum, eps=eps,
            count_padding=count_padding, sync_stats=sync_stats))
        self.num_features = num_features
        self.window = o.pop("window")[0]
        for name, value in o.items():
            setattr(self, name, value)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("omega", torch.zeros(self.window, num_features))
        self.register_buffer("phi", torch.zeros(self.window, num_features))

    def inference_scale(self) -> Tuple[Tensor, Tensor]:
        """The inference map ``y = a * x + b`` as float32 ``(a, b)``."""
        return self.weight.float() * torch.rsqrt(self.running_var + self.eps), self.bias.float()

    def _uses_current_batch(self, t: int) -> bool:
        return t <= self.window or t < self.warmup

    def forward_statistics(self, s: Tensor, ok: Tensor, t: int) -> ForwardStats:
        """``s`` into the ring ``omega``; ``sigma2`` its mean after warmup; ``r`` multiplies
        the forward; ``running_var`` an EMA of ``sigma2``."""
        slot = t % self.window
        self.omega[slot] = keep_if(ok, s, self.omega[slot])
        sigma2 = s if self._uses_current_batch(t) else self.omega.mean(0)
        r = compensation(sigma2, self.running_var, self.eps, t, self.warmup)
        new_var = self.momentum * self.running_var + (1 - self.momentum) * sigma2
        self.running_var.copy_(keep_if(ok, new_var, self.running_var))
        return ForwardStats(sigma2, r=r, r_in_forward=True)

    def backward_coefficient(self, gz: Tensor, ok: Tensor, t: int, stats: ForwardStats) -> Tensor:
        """``gz`` into the ring ``phi``; ``c`` its mean after warmup."""
        ok = ok & torch.isfinite(gz).all()
        slot = t % self.window
        self.phi[slot] = keep_if(ok, gz, self.phi[slot])
        return gz if self._uses_current_batch(t) else self.phi.mean(0)

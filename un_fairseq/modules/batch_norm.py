"""Batch normalisation over the tokens of a batch (Ioffe & Szegedy, ICML 2015), padding
excluded: offline, foldable at inference.

Mean and biased variance per channel over real tokens, full autograd through them; running
statistics with PyTorch's convention (``momentum`` weighs the new batch, running_var is
updated from the unbiased variance).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .base import PaddingAwareNorm, as_rows, keep_if
from .registry import register_norm
from .spec import EPS, SYNC_STATS, Option, check_options, defaults
from .sync import global_mean_var, stats_group

OPTIONS = (
    Option("momentum", "momentum", 0.1, "running-statistics momentum, PyTorch convention",
           flag="--bn-momentum"),
    EPS,
    SYNC_STATS,
)
_DEFAULT = defaults(OPTIONS)


def _masked_mean(values: Tensor, keep: Optional[Tensor], n) -> Tensor:
    """Per-channel mean of ``values`` (N x C) over real rows; differentiable."""
    if keep is None:
        return values.mean(0)
    return (keep.t() @ values).squeeze(0) / n


@register_norm("batch", label="BN", row=4, doc="batch normalisation over tokens (Ioffe & Szegedy, "
               "ICML 2015)", offline=True, batch_stats=True, options=OPTIONS)
class MaskedBatchNorm(PaddingAwareNorm):
    """Batch norm over non-padding tokens (Ioffe & Szegedy, ICML 2015); offline.

    Args (defaults, checks and flags: :data:`OPTIONS`): ``momentum``, ``eps``, ``sync_stats``.

    Shape: x ``T x B x C`` (any ``... x C`` without a mask), padding_mask ``B x T``.
    Buffers: ``running_mean``, ``running_var`` (C), ``num_batches_tracked``.
    ``sync_stats=True`` shares the batch statistics, and their gradients, across
    torch.distributed's default group when it is initialised (``modules/sync.py``).
    """

    stat_buffers = ("running_mean", "running_var")

    def __init__(
        self, num_features: int, momentum: float = _DEFAULT.momentum, eps: float = _DEFAULT.eps,
        sync_stats: bool = _DEFAULT.sync_stats,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        checked = check_options(type(self).__name__, OPTIONS, dict(momentum=momentum, eps=eps, sync_stats=sync_stats))
        for name, value in checked.items():
            setattr(self, name, value)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def inference_scale(self) -> Tuple[Tensor, Tensor]:
        """The inference map ``y = a * x + b`` as float32 ``(a, b)``."""
        a = self.weight.float() * torch.rsqrt(self.running_var + self.eps)
        return a, self.bias.float() - a * self.running_mean

    def normalize(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        if not self.training:
            return self.inference_affine(x)
        self._training_forward_begins()
        rows, keep, n = as_rows(x, padding_mask)
        rows32 = rows.float()
        group = stats_group(self.sync_stats)
        if group is None:
            mean = _masked_mean(rows32, keep, n)
            centred = rows32 - mean
            var = _masked_mean(centred * centred, keep, n)
        else:  # running_mean is the same on every rank: only these statistics update it
            mean, var, n = global_mean_var(rows32, keep, self.running_mean, group)
            centred = rows32 - mean
        y = centred * torch.rsqrt(var + self.eps) * self.weight.float() + self.bias.float()
        with torch.no_grad():
            ok = torch.isfinite(mean).all() & torch.isfinite(var).all()
            unbiased = var * n / ((n - 1).clamp_min(1) if torch.is_tensor(n) else max(n - 1, 1))
            m = self.momentum
            self.running_mean.copy_(keep_if(ok, (1 - m) * self.running_mean + m * mean, self.running_mean))
            self.running_var.copy_(keep_if(ok, (1 - m) * self.running_var + m * unbiased, self.running_var))
            self.num_batches_tracked.add_(ok.long())
        return y.to(x.dtype).view(x.shape)

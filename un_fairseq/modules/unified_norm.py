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

from dataclasses import replace
from typing import Tuple, Union

import torch
from torch import Tensor, nn

from .base import keep_if
from .batch_stats import BatchStatNorm, ForwardStats, compensation
from .registry import register_norm
from .spec import COUNT_PADDING, EPS, SYNC_STATS, Option, check_options, defaults

OPTIONS = (
    Option("window", "window", 4,
           "window M: batches averaged in the forward (geometric mean) and backward (moving "
           "average); 'F,B' sets them apart", flag="--un-window", metavar="M[,M_BWD]"),
    Option("warmup", "warmup", 4000,
           "steps normalised by the current batch only. UN counts steps in training forward "
           "calls, not updates: with --update-freq K the warmup of W ends after W/K updates (and "
           "r's schedule, which starts after max(1000, W) calls, after max(1000, W)/K)",
           flag="--un-warmup"),
    Option("momentum", "momentum", 0.9,
           "momentum alpha of running_var and the gradient EMA, in (0, 1)", flag="--un-momentum"),
    replace(EPS, flag="--un-eps"),
    Option("outlier_filtration", "flag", False,
           "skip the moving averages on outlier batches (the authors use it for vision, not NMT)",
           flag="--un-outlier-filtration"),
    COUNT_PADDING,
    Option("fp_geometric_mean", "flag", True,
           "ablation (Table 9, 'FP GM'): normalise by the current batch, no geometric mean",
           flag="--un-no-fp-gm", negated=True),
    Option("bp_moving_average", "flag", True,
           "ablation (Table 9, 'BP AM'): no simple moving average in the backward",
           flag="--un-no-bp-sma", negated=True),
    Option("bp_momentum", "flag", True,
           "ablation (Table 9, 'BP alpha'): no exponential moving average in the backward",
           flag="--un-no-bp-ema", negated=True),
    SYNC_STATS,
)
_DEFAULT = defaults(OPTIONS)


def geometric_mean(ring: Tensor) -> Tensor:
    """Per-channel geometric mean of a ring ``M x C``, as ``exp(mean(log))`` (stable)."""
    return ring.log().mean(0).exp()


@register_norm("un", label="UN", row=8, doc="Unified Normalization (Yang et al., ACM MM 2022)",
               offline=True, batch_stats=True, options=OPTIONS, default=True)
class UnifiedNorm(BatchStatNorm):
    """Unified Normalization (Yang et al., ACM MM 2022); offline: folds into the next linear.

    Args (defaults, checks and flags: :data:`OPTIONS`):
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
        window: Union[int, Tuple[int, int]] = _DEFAULT.window,
        warmup: int = _DEFAULT.warmup,
        momentum: float = _DEFAULT.momentum,
        eps: float = _DEFAULT.eps,
        outlier_filtration: bool = _DEFAULT.outlier_filtration,
        count_padding: bool = _DEFAULT.count_padding,
        fp_geometric_mean: bool = _DEFAULT.fp_geometric_mean,
        bp_moving_average: bool = _DEFAULT.bp_moving_average,
        bp_momentum: bool = _DEFAULT.bp_momentum,
        sync_stats: bool = _DEFAULT.sync_stats,
    ) -> None:
        super().__init__()
        o = check_options(type(self).__name__, OPTIONS, dict(
            window=window, warmup=warmup, momentum=momentum, eps=eps,
            outlier_filtration=outlier_filtration, count_padding=count_padding,
            fp_geometric_mean=fp_geometric_mean, bp_moving_average=bp_moving_average,
            bp_momentum=bp_momentum, sync_stats=sync_stats,
        ))
        self.num_features = num_features
        self.fwd_window, self.bwd_window = o.pop("window")
        for name, value in o.items():
            setattr(self, name, value)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("psi", torch.zeros(num_features))
        self.register_buffer("omega", torch.zeros(self.fwd_window, num_features))
        self.register_buffer("phi", torch.zeros(self.bwd_window, num_features))
        self.register_buffer("num_skips", torch.zeros((), dtype=torch.long))

    @property
    def window(self) -> Tuple[int, int]:
        return (self.fwd_window, self.bwd_window)

    def inference_scale(self) -> Tuple[Tensor, Tensor]:
        """The inference map ``y = a * x + b`` as float32 ``(a, b)`` (paper Algorithm 1)."""
        a = self.weight.float() * torch.rsqrt(self.running_var + self.eps)
        return a, self.bias.float()

    # -- the forward statistics, spec steps 3-7 and 9 ------------------------------------

    def forward_statistics(self, s: Tensor, ok: Tensor, t: int) -> ForwardStats:
        """Update ``omega``, pick ``sigma2``, ``r`` and ``skip``, update ``running_var``.

        ``skip`` is a Python bool when it is known on the host, else a 0-dim bool tensor
        (the outlier test), so that no branch waits on the device.
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

        r = None if skip is True else compensation(sigma2, self.running_var, self.eps, t, W)
        if r is not None and skip is not False:
            r = torch.where(skip, torch.ones_like(r), r)
        new_var = self.momentum * self.running_var + (1 - self.momentum) * sigma2
        self.running_var.copy_(keep_if(ok, new_var, self.running_var))
        return ForwardStats(sigma2, r=r, skip=skip)

    # -- the backward statistics, spec backward steps 2-5 --------------------------------

    def backward_coefficient(self, gz: Tensor, ok: Tensor, t: int, stats: ForwardStats) -> Tensor:
        """Update ``phi`` and ``psi``; return ``c``, the coefficient of ``z`` in ``dx``."""
        M, W, phi, psi, skip = self.bwd_window, self.warmup, self.phi, self.psi, stats.skip
        ok = ok & torch.isfinite(gz).all()
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

"""Batch statistics shared across the data-parallel group (the norms' ``sync_stats=True``).

With data parallelism each rank sees only its shard ``B_k`` of the batch. A norm built with
``sync_stats=True`` adds up, over the ranks, the per-channel sums its statistics are made of
and the number of real (non-padding) tokens they were taken over, then divides: K ranks with
batches ``B_1..B_K`` get the statistics of their concatenation, exactly as one process would,
so every state update that follows (rings, running averages, step counts, the non-finite
guard) is the same computation on the same numbers on every rank. Token counts are summed,
never averaged over ranks, so ranks holding different numbers of real tokens weigh right.

One all-reduce (SUM) per norm call and direction: each call packs what it needs into one
float32 tensor. Nothing here waits on the device (no ``.item()``).

The process group is torch.distributed's default one, used when it is initialised with more
than one process; otherwise (one process, no torch.distributed) every function here is the
plain local computation, bit for bit.
"""

from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .row_sums import kept, quadratic_mean


def stats_group(sync_stats: bool) -> Optional["dist.ProcessGroup"]:
    """The group to reduce the statistics over, or None when there is nothing to share."""
    if not sync_stats or not dist.is_available() or not dist.is_initialized():
        return None
    if dist.get_world_size() == 1:
        return None
    return dist.group.WORLD


def real_token_count(rows: Tensor, keep: Optional[Tensor]) -> Tensor:
    """The number of rows that count (``keep`` is ``N x 1`` or None), float32 1-element."""
    if keep is None:
        return torch.full((1,), float(rows.shape[0]), dtype=torch.float32, device=rows.device)
    return keep.sum().reshape(1)


def summed(values: Tensor, group) -> Tensor:
    """``values`` added up over the ranks of ``group``, in place; ``values`` itself when
    ``group`` is None. No gradient flows through it (for the hand-written backwards)."""
    if group is not None:
        dist.all_reduce(values, op=dist.ReduceOp.SUM, group=group)
    return values


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (SUM) with a gradient: the gradient of a sum over ranks is the sum over
    ranks of the gradients, so the backward is the same all-reduce."""

    @staticmethod
    def forward(ctx, values: Tensor, group) -> Tensor:
        ctx.group = group
        out = values.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def global_quadratic_mean(x: Tensor, keep: Optional[Tensor], n, group) -> Tuple[Tensor, object]:
    """``(s, n)``: the quadratic mean per channel (spec step 2) and the number of real tokens,
    over the rows ``x`` (``N x C``) of every rank. Without a group: ``quadratic_mean(x, keep, n)``
    and ``n`` unchanged. One all-reduce of ``C + 1`` floats: ``sum x^2`` and the count."""
    if group is None:
        return quadratic_mean(x, keep, n), n
    sum_of_squares = quadratic_mean(x, keep, 1.0)  # float32 accumulation, any dtype
    packed = torch.cat([sum_of_squares, real_token_count(x, keep)])
    summed(packed, group)
    total = packed[-1].clamp_min(1.0)
    return packed[:-1] / total, total


def global_mean_var(x: Tensor, keep: Optional[Tensor], shift: Tensor, group) -> Tuple[Tensor, Tensor, Tensor]:
    """``(mean, var, n)`` per channel over the real rows of ``x`` (``N x C``, float32) of every
    rank, biased variance, differentiable (batch norm's statistics). One all-reduce of
    ``2C + 1`` floats: ``sum d``, ``sum d^2`` and the count, with ``d = x - shift``.

    ``shift`` (C) only conditions the arithmetic (``var = E[d^2] - E[d]^2`` loses precision
    when ``|mean| >> std``): it must be the same on every rank, e.g. a running mean updated
    from these shared statistics only.
    """
    shift = shift.detach().clone()  # the caller may update its running mean in place
    d = x - shift
    dk = kept(d, keep)
    packed = torch.cat([dk.sum(0), (dk * d).sum(0), real_token_count(x, keep)])
    packed = _SumOverRanks.apply(packed, group)
    C = x.shape[-1]
    n = packed[-1].detach().clamp_min(1.0)
    mean_d = packed[:C] / n
    var = (packed[C:2 * C] / n - mean_d * mean_d).clamp_min(0.0)
    return shift + mean_d, var, n

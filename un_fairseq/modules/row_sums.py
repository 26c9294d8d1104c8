"""Per-channel sums over the rows (tokens) of ``N x C`` activations, without temporaries.

On CPU float32 every reduction goes through ATen's eval-mode batch-norm backward kernel,
which computes ``dy * w * invstd``, ``sum(dy * (x - mean) * invstd)`` and ``sum(dy)`` in one
fused pass: with ``mean = 0`` and ``invstd = 1`` it is exactly the sums the offline norms
need. Elsewhere (CUDA, where temporaries are cheap, or half precision) plain float32 ops.

The offline norms with a hand-written gradient (UN, MABN, PowerNorm) all have
``dx = dy * a - x * b`` with per-channel ``a``, ``b`` and the ``b`` term (the statistics
correction) on real tokens only; :class:`RowGrad` builds it in that order.
"""

from typing import Optional

import torch
from torch import Tensor

_bn_backward = torch.ops.aten.native_batch_norm_backward
_EPS = 1e-5


def _fused(*tensors: Tensor) -> bool:
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


def _unit_stats(like: Tensor):
    """``(mean, var)`` making the kernel's ``invstd`` exactly 1 (its eps is ``_EPS``)."""
    C = like.shape[-1]
    return like.new_zeros(C), like.new_full((C,), 1.0 - _EPS)


def sum_of_products(a: Tensor, b: Tensor) -> Tensor:
    """``sum_rows(a * b)`` per channel, float32."""
    if _fused(a, b):
        mean, var = _unit_stats(a)
        return _bn_backward(a, b, None, mean, var, None, None, False, _EPS, [False, True, False])[1]
    return (a.float() * b.float()).sum(0)


def kept(x: Tensor, keep: Optional[Tensor]) -> Tensor:
    """``x`` with padding rows zeroed (``keep`` is ``N x 1``), or ``x`` itself."""
    return x if keep is None else x * keep.to(x.dtype)


def quadratic_mean(x: Tensor, keep: Optional[Tensor], n) -> Tensor:
    """``s = mean over real rows of x^2`` per channel, float32 (spec step 2)."""
    return sum_of_products(x, kept(x, keep)) / n


class RowGrad:
    """The pieces of ``dx = dy * a - x * b`` and the sums they need.

    After construction: ``mean_dyx`` (mean over real rows of ``dy * x``), ``sum_dyx`` (sum
    over all rows), ``sum_dy``; then :meth:`dx` with the correction coefficient ``b``.
    """

    def __init__(self, dy: Tensor, x: Tensor, keep: Optional[Tensor], n, a: Tensor) -> None:
        self.xk = kept(x, keep)
        if _fused(dy, x):
            mean, var = _unit_stats(x)
            self._dx, sum_keep, self.sum_dy = _bn_backward(
                dy, self.xk, a.float(), mean, var, None, None, False, _EPS, [True, True, True]
            )
            self.sum_dyx = sum_keep if keep is None else sum_of_products(dy, x)
        else:
            self._dx = dy * a.to(dy.dtype)
            sum_keep = sum_of_products(dy, self.xk)
            self.sum_dyx = sum_keep if keep is None else sum_of_products(dy, x)
            self.sum_dy = dy.sum(0, dtype=torch.float32)
        self.mean_dyx = sum_keep / n

    def dx(self, b: Tensor) -> Tensor:
        return self._dx.addcmul_(self.xk, -b.to(self._dx.dtype))

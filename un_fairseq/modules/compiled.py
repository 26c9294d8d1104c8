"""The row sums and element-wise maps of the batch-statistics norms as pure functions
(tensors in, tensors out; no state), compiled with ``torch.compile`` (inductor: C++/OpenMP
on CPU, Triton on CUDA), with the eager kernels of ``row_sums.py`` as the fallback.

Rows are ``N x C`` (tokens x channels), ``keep`` is ``N x 1`` float32 (1 at real tokens) or
None, per-channel vectors are float32 ``(C,)``; every sum accumulates in float32 whatever
the activations' dtype, and every output has the activations' dtype. The maths is the
spec's (``docs/normalizers.md``, UN forward steps 2 and 8, backward steps 1, 5 and 6):

- :func:`square_sum`: ``sum over real rows of x^2`` (the quadratic mean times ``n``);
- :func:`scale_shift`: ``y = x * a + b`` (the forward's affine map, ``a = gamma r / sigma``);
- :func:`grad_sums`: ``sum dy``, ``sum dy * x`` over all rows and over real rows;
- :func:`grad_input`: ``dx = dy * a - keep * x * b`` (``a = gamma r / sigma``,
  ``b = c / sigma^2``: the spec's ``(g - c z) / sigma``).

Each is compiled once per dtype and per ``keep``-is-None, with dynamic shapes
(``dynamic=True``), so batches of other lengths do not recompile. If compilation fails (no
C++ compiler, an unsupported backend), :func:`run` says so once in the log and the caller
takes its eager path from then on.
"""

import logging
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

#: Rows summed per block: inductor vectorises a sum over the rows of ``N x C`` along ``C``
#: when it is written as a sum over blocks of rows, then over the blocks.
BLOCK = 64


def column_sum(v: Tensor) -> Tensor:
    """``v.sum(0)`` of a float32 ``N x C`` in two stages (blocks of :data:`BLOCK` rows, padded
    with zeros: inductor fuses the padding into the loop). One more zero block than needed
    keeps the number of blocks >= 2, so the kernel compiled for a short batch (one block,
    which dynamic shapes would specialise on) serves every length."""
    N, C = v.shape
    return F.pad(v, (0, 0, 0, (-N) % BLOCK + BLOCK)).reshape(-1, BLOCK, C).sum(1).sum(0)


def square_sum(x: Tensor, keep: Optional[Tensor]) -> Tensor:
    xf = x.float()
    sq = xf * xf if keep is None else xf * xf * keep
    return column_sum(sq)


def scale_shift(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return (x.float() * a + b).to(x.dtype)


def grad_sums(dy: Tensor, x: Tensor, keep: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    dyf = dy.float()
    prod = dyf * x.float()
    total = column_sum(prod)
    return column_sum(dyf), total, total if keep is None else column_sum(prod * keep)


def grad_input(dy: Tensor, x: Tensor, keep: Optional[Tensor], a: Tensor, b: Tensor) -> Tensor:
    xf = x.float() if keep is None else x.float() * keep
    return (dy.float() * a - xf * b).to(dy.dtype)


KERNELS: Dict[str, Callable] = {f.__name__: f for f in (square_sum, scale_shift, grad_sums, grad_input)}

_compiled: Dict[str, Callable] = {}
#: why compilation is off in this process (None: not tried or working)
unavailable: Optional[str] = None


def _compile(fn: Callable) -> Callable:
    """``torch.compile`` with dynamic shapes (tests replace it to force a failure)."""
    return torch.compile(fn, dynamic=True)


def run(name: str, *args):
    """The compiled kernel ``name`` on ``args``, or None when compilation is unavailable
    (the caller then takes its eager path)."""
    global unavailable
    if unavailable is not None:
        return None
    try:
        kernel = _compiled.get(name)
        if kernel is None:
            kernel = _compiled[name] = _compile(KERNELS[name])
        # detached aliases: the rows are views of T x B x C activations, and dynamo would guard
        # on the base's sizes (T == B in one batch would then recompile for the next)
        return kernel(*(a.detach() if isinstance(a, Tensor) else a for a in args))
    except Exception as err:  # noqa: BLE001  (any compiler failure: fall back, once)
        unavailable = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        logger.warning("torch.compile is unavailable for the norms' kernels (%s); using the eager "
                       "kernels", unavailable)
        return None


def reset() -> None:
    """Forget compiled kernels and a failure (tests)."""
    global unavailable
    _compiled.clear()
    unavailable = None

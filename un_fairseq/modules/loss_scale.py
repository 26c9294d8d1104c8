"""The loss scale of the backward pass in progress, so that the norms keep their gradient
statistics in unscaled units.

Under dynamic loss scaling the upstream gradient ``dy`` arrives multiplied by the current
scale ``S`` (fairseq: 128 at the start, doubled every ``--fp16-scale-window`` updates,
halved at each overflow). UN's ``phi`` / ``psi``, PowerNorm's ``grad_ema`` and MABN's
``phi`` average gradient statistics over steps, so they would mix values of different
scales whenever ``S`` changes. The norms divide each new statistic by ``S`` before it enters
their state and multiply the correction by ``S`` when they build ``dx``; for a power of two
both are exact, so a loss-scaled run computes bit for bit what the unscaled one does.

fairseq's optimizer wrappers publish ``S`` around their ``backward(loss)``
(``un_fairseq/fp16_hooks.py``); outside them :func:`current` is the Python float 1.0 and the
norms skip the two multiplications entirely. The published value is a module global (not a
thread-local) because autograd runs a CUDA backward on its own worker threads; fairseq runs
one backward at a time per process.
"""

from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Union

from torch import Tensor

Scale = Union[float, Tensor]

_scale_of_backward: Optional[Callable[[], Scale]] = None


def current() -> Scale:
    """``S`` of the backward in progress: a float, a 1-element tensor (amp's scale, read
    without a device sync), or 1.0 outside a loss-scaled backward."""
    return 1.0 if _scale_of_backward is None else _scale_of_backward()


def is_one(scale: Scale) -> bool:
    """True for the float 1.0 (no scaling), without looking at a tensor's value."""
    return not isinstance(scale, Tensor) and scale == 1.0


@contextmanager
def scaled_backward(scale: Callable[[], Scale]) -> Iterator[None]:
    """Publish ``scale()`` as the loss scale while the block runs (a backward pass)."""
    global _scale_of_backward
    previous, _scale_of_backward = _scale_of_backward, scale
    try:
        yield
    finally:
        _scale_of_backward = previous

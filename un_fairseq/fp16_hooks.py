"""What the norms need from fairseq's mixed-precision optimizer wrappers, wired in when the
plugin is imported (any ``--user-dir un_fairseq`` command).

fairseq's trainer builds ``FP16Optimizer`` / ``MemoryEfficientFP16Optimizer`` (``--fp16``)
or ``AMPOptimizer`` (``--amp``) itself, so the plugin cannot hand it a subclass. Instead it
wraps three methods of those classes, each narrowly and without changing what they do:

- ``backward(loss)`` runs inside :func:`un_fairseq.modules.loss_scale.scaled_backward`,
  which publishes the wrapper's current loss scale ``S`` (the ``DynamicLossScaler``'s float;
  amp's scale tensor, read without a device sync) while autograd runs, so that UN, PowerNorm
  and MABN keep their gradient statistics in unscaled units;
- ``zero_grad()`` (called by the trainer at the start of every update and after a skipped
  one) starts a new step for :mod:`un_fairseq.modules.step_rollback`, so the norms save
  their state at their first training forward of the step;
- the overflow check (``DynamicLossScaler.check_overflow`` raising ``OverflowError`` /
  ``FloatingPointError``; a non-finite norm from ``AMPOptimizer.clip_grad_norm``) rolls the
  norms back to that saved state, so a skipped update leaves them as they were.

Why this is safe: the wrapped methods are called exactly as before with the same
arguments, and return or raise what they did; the only state touched is the plugin's own
(two module globals and the norms' buffers). Without ``--fp16`` / ``--amp`` none of these
classes is built and nothing changes. Applying the wrappers twice is a no-op.
"""

import functools
from typing import Callable

import torch
from fairseq.optim import amp_optimizer, dynamic_loss_scaler, fp16_optimizer

from .modules import loss_scale, step_rollback

_MARK = "_un_fairseq_wrapped"


def _fp16_scale(optimizer) -> loss_scale.Scale:
    return 1.0 if optimizer.scaler is None else optimizer.scaler.loss_scale


def _amp_scale(optimizer) -> loss_scale.Scale:
    scaler = optimizer._grad_scaler
    if not scaler.is_enabled():
        return 1.0
    return scaler._get_scale_async()  # the device tensor, unlike get_scale() (a sync)


def _publishing_scale(backward: Callable, scale_of: Callable) -> Callable:
    @functools.wraps(backward)
    def wrapped(self, loss):
        with loss_scale.scaled_backward(lambda: scale_of(self)):
            return backward(self, loss)
    return wrapped


def _starting_step(zero_grad: Callable) -> Callable:
    @functools.wraps(zero_grad)
    def wrapped(self, *args, **kwargs):
        step_rollback.begin_step()
        return zero_grad(self, *args, **kwargs)
    return wrapped


def _rolling_back_on_overflow(check_overflow: Callable) -> Callable:
    @functools.wraps(check_overflow)
    def wrapped(self, grad_norm):
        try:
            return check_overflow(self, grad_norm)
        except (OverflowError, FloatingPointError):
            step_rollback.roll_back()
            raise
    return wrapped


def _rolling_back_on_nonfinite_norm(clip_grad_norm: Callable) -> Callable:
    @functools.wraps(clip_grad_norm)
    def wrapped(self, *args, **kwargs):
        grad_norm = clip_grad_norm(self, *args, **kwargs)
        if not torch.isfinite(grad_norm).all():  # the same test (and sync) as the wrapped method
            step_rollback.roll_back()
        return grad_norm
    return wrapped


def _wrap(cls: type, name: str, wrapper: Callable, *args) -> None:
    """Replace ``cls.name`` (its own or the inherited one) on ``cls`` only."""
    method = next(c.__dict__[name] for c in cls.__mro__ if name in c.__dict__)
    if not getattr(method, _MARK, False):
        wrapped = wrapper(method, *args)
        setattr(wrapped, _MARK, True)
        setattr(cls, name, wrapped)


def install() -> None:
    """Wrap the methods described above (idempotent)."""
    for cls in (fp16_optimizer._FP16OptimizerMixin, fp16_optimizer._MemoryEfficientFP16OptimizerMixin):
        _wrap(cls, "backward", _publishing_scale, _fp16_scale)
        _wrap(cls, "zero_grad", _starting_step)
    _wrap(dynamic_loss_scaler.DynamicLossScaler, "check_overflow", _rolling_back_on_overflow)
    _wrap(amp_optimizer.AMPOptimizer, "backward", _publishing_scale, _amp_scale)
    _wrap(amp_optimizer.AMPOptimizer, "zero_grad", _starting_step)  # inherited: wrapped here only
    _wrap(amp_optimizer.AMPOptimizer, "clip_grad_norm", _rolling_back_on_nonfinite_norm)

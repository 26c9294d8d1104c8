"""The one place where the plugin touches fairseq code: the loss scale of ``--fp16`` /
``--amp`` training, which the norms need during the backward pass.

Under dynamic loss scaling the gradient that reaches a norm is multiplied by the optimizer
wrapper's current scale ``S`` (``modules/loss_scale.py`` says why UN, PowerNorm and MABN
need it). fairseq's trainer builds ``FP16Optimizer`` / ``MemoryEfficientFP16Optimizer``
(``--fp16``) or ``AMPOptimizer`` (``--amp``) itself and hands the model neither the wrapper
nor its scale, so :func:`install` wraps the ``backward(loss)`` of those classes: the wrapped
method runs inside :func:`~un_fairseq.modules.loss_scale.scaled_backward`, which publishes
``S`` (the ``DynamicLossScaler``'s float; amp's scale tensor, read without a device sync)
while autograd runs. It receives, returns and raises exactly what it did.

Nothing is wrapped at ``import un_fairseq``: ``transformer_un`` calls :func:`install_for`
when fairseq's trainer first hands it the update number, and only for a run that trains
with ``--fp16``, ``--memory-efficient-fp16`` or ``--amp``; that call also switches on the
rollback of skipped updates (``modules/step_rollback.py``, which wraps nothing).
Written for fairseq :data:`FAIRSEQ_VERSIONS` (what ``setup.py`` pins); with another version
the run stops at start-up with a message saying so, since these are private classes.
"""

import functools
from typing import Callable

import fairseq
from fairseq.optim import amp_optimizer, fp16_optimizer

from .modules import loss_scale, step_rollback

#: The fairseq releases whose optimizer wrappers this module was written and tested for.
FAIRSEQ_VERSIONS = ("0.12.2", "0.12.3")

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


_TARGETS = (
    (fp16_optimizer._FP16OptimizerMixin, _fp16_scale),
    (fp16_optimizer._MemoryEfficientFP16OptimizerMixin, _fp16_scale),
    (amp_optimizer.AMPOptimizer, _amp_scale),
)


def check_version(version: str = fairseq.__version__) -> None:
    if version not in FAIRSEQ_VERSIONS:
        raise RuntimeError(
            f"fairseq {version}: un_fairseq's --fp16/--amp support was written for fairseq "
            f"{' or '.join(FAIRSEQ_VERSIONS)} (it wraps their optimizers' backward); train in fp32 "
            "or install the pinned version"
        )


def install() -> None:
    """Wrap the three ``backward`` methods (idempotent) and switch on the rollback."""
    check_version()
    for cls, scale_of in _TARGETS:
        backward = cls.__dict__["backward"]
        if not getattr(backward, _MARK, False):
            wrapped = _publishing_scale(backward, scale_of)
            setattr(wrapped, _MARK, True)
            cls.backward = wrapped
    step_rollback.enable()


def uninstall() -> None:
    """Undo :func:`install` (tests; a training process keeps the wrappers to its end)."""
    for cls, _ in _TARGETS:
        backward = cls.__dict__["backward"]
        if getattr(backward, _MARK, False):
            cls.backward = backward.__wrapped__
    step_rollback.reset()


def trains_loss_scaled(args) -> bool:
    """Does the run of ``args`` train with a loss-scaling optimizer wrapper?"""
    return any(getattr(args, name, False) for name in ("fp16", "memory_efficient_fp16", "amp"))


def install_for(args) -> None:
    """:func:`install` if the run of ``args`` trains with ``--fp16`` or ``--amp``."""
    if trains_loss_scaled(args):
        install()

"""What every normalizer here shares: the ``(x, padding_mask=None)`` call, the padding mask
handed down by the model, the flattening of non-padding tokens into rows, and (for the
stateful ones) a training-step count kept on the host without waiting on the device.

Shapes: ``x`` is ``T x B x C`` (fairseq is time-major) or any ``... x C`` when no mask is
given; ``padding_mask`` is ``B x T`` bool with True at padding.
"""

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from . import registry, step_rollback


class SpecOptions:
    """Mixin: the options a norm was built with, named as in its registration."""

    @property
    def norm_type(self) -> str:
        """The ``--norm-type`` name that builds this norm."""
        return registry.norm_type_of(self)

    def constructor_options(self) -> Dict[str, Any]:
        """``build_norm(self.norm_type, self.num_features, **self.constructor_options())``
        builds this norm's twin."""
        return {name: getattr(self, name) for name in registry.spec_of(self.norm_type).option_names}


class PaddingAwareNorm(SpecOptions, nn.Module):
    """Base class: ``forward(x, padding_mask=None)``.

    fairseq's layers call their norms with ``x`` only, so the surrounding encoder or decoder
    hands the mask down with :func:`padding_context` instead; an explicit ``padding_mask``
    argument wins over the one from the context.
    """

    context_padding_mask: Optional[Tensor] = None

    #: float buffers that hold statistics: they keep their float32 values exactly under
    #: `.half()`, `.bfloat16()`, `.to(dtype)`, `model.half()` (only their device follows).
    stat_buffers: Tuple[str, ...] = ()

    def _apply(self, fn, *args, **kwargs):
        float32 = {name: self._buffers[name] for name in self.stat_buffers}
        super()._apply(fn, *args, **kwargs)
        for name, old in float32.items():
            new = self._buffers[name]
            if new.dtype != old.dtype:  # a dtype change: keep the float32 values, move them only
                self._buffers[name] = old.to(new.device)
        return self

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.constructor_options().items())
        return f"{self.num_features}, {options}"

    def _training_forward_begins(self) -> None:
        """Called before each training forward that may change state: lets
        :mod:`.step_rollback` copy the state once per update attempt under fp16 / amp."""
        step_rollback.remember(self)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        step_rollback.settle(self)  # a skipped last update leaves no trace in a checkpoint
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def state_snapshot(self) -> Dict[str, Any]:
        """A copy of everything a training forward or backward changes."""
        return {"buffers": {n: b.clone() for n, b in self._buffers.items() if b is not None}}

    def restore_snapshot(self, snapshot: Dict[str, Any]) -> None:
        for name, saved in snapshot["buffers"].items():
            self._buffers[name].copy_(saved)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        if padding_mask is None:
            padding_mask = self.context_padding_mask
        if not self.training:
            step_rollback.settle(self)  # validation after a skipped update
        return self.normalize(x, padding_mask)

    def normalize(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def inference_affine(self, x: Tensor) -> Tensor:
        """Eval mode of an offline norm: ``y = a * x + b`` with ``(a, b)`` from the subclass's
        float32 ``inference_scale()`` (paper Algorithm 1), in ``x``'s dtype."""
        a, b = self.inference_scale()
        return torch.addcmul(b.to(x.dtype), x, a.to(x.dtype))


@contextmanager
def padding_context(module: nn.Module, padding_mask: Optional[Tensor]) -> Iterator[None]:
    """Make every :class:`PaddingAwareNorm` below ``module`` see ``padding_mask`` (B x T)."""
    norms = [m for m in module.modules() if isinstance(m, PaddingAwareNorm)]
    for norm in norms:
        norm.context_padding_mask = padding_mask
    try:
        yield
    finally:
        for norm in norms:
            norm.context_padding_mask = None


def as_rows(
    x: Tensor, padding_mask: Optional[Tensor], count_padding: bool = False
) -> Tuple[Tensor, Optional[Tensor], int]:
    """Flatten ``x`` to rows ``(N, C)`` and return ``(rows, keep, n)``.

    ``keep`` is ``(N, 1)`` float32 with 1 at real tokens, or None when every row counts
    (no mask, or ``count_padding`` as in the authors' release); ``n`` is then the number of
    rows, else the number of real tokens as a float32 0-dim tensor (no host sync).
    """
    rows = x.reshape(-1, x.shape[-1])
    if padding_mask is None or count_padding:
        return rows, None, rows.shape[0]
    if x.dim() != 3 or padding_mask.shape != (x.shape[1], x.shape[0]):
        raise ValueError(
            f"padding_mask of shape {tuple(padding_mask.shape)} does not match x of shape "
            f"{tuple(x.shape)}: expected x as T x B x C and the mask as B x T"
        )
    keep = (~padding_mask).t().reshape(-1, 1).to(torch.float32)
    return rows, keep, keep.sum().clamp_min(1.0)


class HostFlag:
    """A 0-dim bool tensor read on the host later, without waiting on the device now.

    On an accelerator the value is copied into pinned host memory behind an event, and
    reading it waits for that event only (the copy is long done by then, since fairseq reads
    the loss every step); on CPU it is the tensor itself. ``event`` replaces the
    accelerator's event (tests drive the waiting logic on CPU with it).
    """

    def __init__(self, ok: Tensor, event: Any = None) -> None:
        on_host = ok.device.type == "cpu"
        if on_host and event is None:
            self.value, self.event = ok, None
            return
        self.value = torch.empty((), dtype=torch.bool, pin_memory=not on_host)
        self.value.copy_(ok, non_blocking=not on_host)
        self.event = torch.Event(device=ok.device) if event is None else event
        self.event.record()

    def __bool__(self) -> bool:
        if self.event is not None:
            self.event.synchronize()
        return bool(self.value)


class StepCountedNorm(PaddingAwareNorm):
    """A stateful normalizer that counts its finite training forward calls ``t``.

    The count lives in the ``num_steps`` buffer (so checkpoints keep it) and is mirrored on
    the host, so that ``t``-dependent choices (warmup, ring slot) need no device sync. A
    non-finite batch leaves ``num_steps`` unchanged on the device; the host mirror learns of
    it at the next call from a :class:`HostFlag` and rolls back.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        self._host_steps = 0
        self._pending_ok: Optional[HostFlag] = None

    def set_step(self, t: int) -> None:
        """Make ``t`` the number of training calls done (benchmarks and tests start a norm past
        its warmups this way); the next call is ``t + 1``."""
        self.num_steps.fill_(t)
        self._host_steps = t
        self._pending_ok = None

    def _next_step(self) -> int:
        """The 1-based index ``t`` of the training call about to run."""
        self._training_forward_begins()
        if self._pending_ok is not None:
            finite, self._pending_ok = self._pending_ok, None
            if not finite:
                self._host_steps -= 1
        return self._host_steps + 1

    def count_step(self, ok: Tensor) -> None:
        """Record the call whose statistics were finite iff ``ok`` (0-dim bool tensor)."""
        self.num_steps.add_(ok.to(self.num_steps.dtype))
        self._host_steps += 1
        self._pending_ok = HostFlag(ok)

    def state_snapshot(self) -> Dict[str, Any]:
        return {**super().state_snapshot(), "host": (self._host_steps, self._pending_ok)}

    def restore_snapshot(self, snapshot: Dict[str, Any]) -> None:
        super().restore_snapshot(snapshot)
        self._host_steps, self._pending_ok = snapshot["host"]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._host_steps = int(self.num_steps)
        self._pending_ok = None


def keep_if(ok: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where the batch was finite, else ``old``: state updates without a branch."""
    return torch.where(ok, new, old)

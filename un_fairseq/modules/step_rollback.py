"""Undo what the norms' training calls changed during an update that fairseq skips.

Under ``--fp16`` (and ``--amp``) fairseq skips an update whose gradients overflowed, but the
forward and backward of that attempt have already run, and a stateful norm's forward has
advanced its running statistics, rings and step count (its backward, its gradient
statistics). A skipped attempt must leave every norm as it was.

Nothing of fairseq is wrapped for this; two facts of its trainer (``Trainer.train_step``,
fairseq 0.12) suffice:

- every attempt at an update starts with ``zero_grad()``, which leaves each parameter's
  ``.grad`` None (fp32, ``--fp16``, ``--memory-efficient-fp16`` and ``--amp`` alike; an amp
  retry of the same batch starts the same way): a norm's first training forward of an
  attempt is the one that finds its weight's gradient None, while the later micro-batches
  of ``--update-freq`` find it set;
- an update is taken by the wrapped torch optimizer's ``step()``, which a skipped one never
  calls (the fp16 overflow check raises before it; amp's ``GradScaler.step`` leaves it out).
  torch counts those calls for us through its public hook
  ``torch.optim.optimizer.register_optimizer_step_post_hook`` (:func:`enable`).

So at its first training forward of an attempt a norm first *settles* the previous attempt
(restores the copy it took then if no optimizer step happened since), then takes a new copy
of its state (a few ``C``-sized vectors and ``M x C`` rings). The last attempt of a run is
settled the same way before the norm's state is saved (``state_dict``) or used in eval mode
(validation after a skipped update), so neither ever sees the statistics of a skipped step.

The guard is off until :func:`enable` (``un_fairseq/fp16_hooks.py`` calls it for a run that
trains with ``--fp16`` / ``--amp``): fp32 training takes no copies. One optimizer per process,
as in fairseq's trainer; a norm whose weight is frozen is not guarded (its gradient is
always None, so its attempts cannot be told apart).
"""

from typing import Any, Optional

from torch.optim.optimizer import register_optimizer_step_post_hook

_steps = 0  # optimizer steps taken in this process since enable()
_hook: Optional[Any] = None  # the handle of torch's step hook; None: the guard is off

_PENDING = "_rollback_pending"  # a norm's (steps at its copy, the copy)


def _count_step(optimizer, args, kwargs) -> None:
    global _steps
    _steps += 1


def enable() -> None:
    """Switch the guard on for this process (idempotent)."""
    global _hook
    if _hook is None:
        _hook = register_optimizer_step_post_hook(_count_step)


def enabled() -> bool:
    return _hook is not None


def settle(norm: Any) -> bool:
    """Close ``norm``'s open attempt: restore its copy if no optimizer step was taken since
    the copy (the update was skipped). Returns True when it restored."""
    pending = getattr(norm, _PENDING, None)
    if pending is None:
        return False
    setattr(norm, _PENDING, None)
    steps, snapshot = pending
    if steps == _steps:
        norm.restore_snapshot(snapshot)
        return True
    return False


def remember(norm: Any) -> None:
    """Called by ``norm`` before each training forward: at the first one of an attempt,
    settle the previous attempt and copy the state this one starts from."""
    weight = getattr(norm, "weight", None)
    if _hook is None or weight is None or not weight.requires_grad or weight.grad is not None:
        return
    settle(norm)
    setattr(norm, _PENDING, (_steps, norm.state_snapshot()))


def reset() -> None:
    """Switch the guard off again (tests)."""
    global _hook, _steps
    if _hook is not None:
        _hook.remove()
    _hook, _steps = None, 0

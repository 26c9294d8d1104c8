"""Undo what the norms' training calls changed during an optimizer step that is skipped.

Under ``--fp16`` (and ``--amp``) fairseq skips an update whose gradients overflowed, but
the forward and backward of that step have already run, and a stateful norm's forward has
advanced its running statistics, rings and step count (its backward, its gradient
statistics). A skipped step must leave every norm as it was, so:

- :func:`begin_step` marks the start of an optimizer step (fairseq's fp16 / amp optimizer
  wrappers call it from ``zero_grad``, see ``un_fairseq/fp16_hooks.py``); until it is first
  called nothing here does anything, so fp32 training pays nothing;
- :func:`remember` is called by a norm before each training forward: at its first one in the
  step it saves a copy of its buffers (a few ``C``-sized vectors and ``M x C`` rings) and its
  host-side step count;
- :func:`roll_back` (called when the wrapper detects the overflow) restores every copy.

One optimizer step at a time per process, as in fairseq's trainer.
"""

from typing import Any, List, Optional, Tuple

_step: Optional[int] = None  # the current optimizer step's id; None: no guard in this process
_saved: List[Tuple[Any, Any]] = []  # (norm, its snapshot) for the norms used in this step


def begin_step() -> None:
    """A new optimizer step starts: forget the previous step's copies."""
    global _step
    _step = 0 if _step is None else _step + 1
    _saved.clear()


def remember(norm: Any) -> None:
    """Save ``norm``'s state unless it was saved already in this step (or no guard is on)."""
    if _step is None or getattr(norm, "_saved_in_step", None) == _step:
        return
    norm._saved_in_step = _step
    _saved.append((norm, norm.state_snapshot()))


def roll_back() -> int:
    """Restore every norm saved in this step; returns how many were restored."""
    restored = len(_saved)
    for norm, snapshot in reversed(_saved):
        norm.restore_snapshot(snapshot)
    begin_step()
    return restored


def reset() -> None:
    """Switch the guard off again (tests)."""
    global _step
    _step = None
    _saved.clear()

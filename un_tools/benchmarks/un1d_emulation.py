"""A COST EMULATION of the authors' released ``UN1d`` layer, for benchmarks only: never
used for training, and its arithmetic is ours, not theirs.

The release computes the same statistics as :class:`~un_fairseq.modules.UnifiedNorm`, but
every training call also (a) reads its step counter on the host with ``.item()`` (a device
synchronisation on GPU), (b) copies the activations with ``x.clone()``, and (c) permutes
fairseq's ``T x B x C`` to its ``B x C x T`` layout and back with ``.contiguous()`` copies.
This module adds exactly those three costs around our implementation, so that a benchmark
can show what they cost (see :mod:`.training`).
"""

from typing import Optional

from torch import Tensor

from un_fairseq.modules import UnifiedNorm


class UN1dCostEmulation(UnifiedNorm):
    """UnifiedNorm plus the release's per-call host sync and activation copies (training).

    Shape: ``x`` is ``T x B x C`` (or ``N x C``); the output has the shape of ``x``.
    """

    def normalize(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        if not self.training:
            return super().normalize(x, padding_mask)
        int(self.num_steps.item())  # (a) host sync: the release branches on its counter
        x = x.clone()  # (b) the release's copy of its input
        if x.dim() == 3:  # (c) T x B x C -> B x C x T (the release's layout) and back
            x = x.permute(1, 2, 0).contiguous().permute(2, 0, 1).contiguous()
        return super().normalize(x, padding_mask)

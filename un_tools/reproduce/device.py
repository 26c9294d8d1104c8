"""Where fairseq runs: the one place that decides whether the drivers pass ``--cpu``.

fairseq falls back to the CPU by itself when torch sees no GPU (``torch.cuda.is_available()``
in ``fairseq/trainer.py`` and ``fairseq_cli/generate.py``), but not everywhere: ``--fp16``'s
flattened gradients are put on ``torch.cuda.current_device()`` (``fairseq/optim/fp16_optimizer.py``)
and the distributed set-up chooses its device from ``--cpu``. So the drivers say ``--cpu``
explicitly on a machine without a GPU, as every run record of ``results/`` shows.
"""

import functools
import glob
import os
from typing import List


def _gpu_device_files() -> bool:
    """Whether the kernel shows an NVIDIA (``/dev/nvidia0``...) or ROCm (``/dev/kfd``) device:
    without one torch cannot see a GPU, and asking it would cost an import of torch."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd")


@functools.lru_cache(maxsize=None)
def device_flags() -> List[str]:
    """The device flags of every fairseq command the drivers build: ``["--cpu"]`` when torch
    would find no GPU, else ``[]``. torch is imported only where a GPU device file exists (and
    only here), so that the drivers' ``--help`` and ``--print-command`` stay fast."""
    if not _gpu_device_files():
        return ["--cpu"]
    import torch

    return [] if torch.cuda.is_available() else ["--cpu"]

"""Loading fairseq checkpoints under torch's safe unpickler.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, which refuses any class it
does not know; a fairseq checkpoint holds a few: its training arguments as an
``argparse.Namespace``, and, when trained with ``--eval-bleu``, the BLEU n-gram counts that
the translation task logs as numpy arrays (saved with the metrics state). Rather than turning
the protection off, we allow exactly the types that rebuild those, so that a checkpoint
carrying anything else (a malicious pickle) is still refused.
"""

import argparse
from typing import List

import numpy as np
import torch

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct


def _numpy_array_types() -> List:
    """What pickle needs to rebuild a plain numeric numpy array (no arbitrary code)."""
    dtypes = {type(np.dtype(t)) for t in (np.int32, np.int64, np.float32, np.float64, np.bool_)}
    return [np.ndarray, np.dtype, _reconstruct, *sorted(dtypes, key=lambda d: d.__name__)]


#: What fairseq translation checkpoints (plain, averaged or fused) hold, besides tensors and
#: the containers that torch already allows.
FAIRSEQ_CHECKPOINT_TYPES = [
    argparse.Namespace,  # the training arguments of legacy (argparse) models
    *_numpy_array_types(),  # --eval-bleu's n-gram counts in the saved metrics
]


def allow_fairseq_checkpoint_types() -> None:
    torch.serialization.add_safe_globals(FAIRSEQ_CHECKPOINT_TYPES)

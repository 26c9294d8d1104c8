"""Reading and writing fairseq checkpoints: safe loading, atomic saving.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, which refuses any class it
does not know; a fairseq checkpoint holds a few: its training arguments as an
``argparse.Namespace``, and, when trained with ``--eval-bleu``, the BLEU n-gram counts that
the translation task logs as numpy arrays (saved with the metrics state). Rather than turning
the protection off, we allow exactly the types that rebuild those
(:func:`allow_fairseq_checkpoint_types`, called when the plugin is imported), so that a
checkpoint carrying anything else (a malicious pickle) is still refused.
"""

import argparse
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from un_atomic import atomic_path

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


#: the first bytes of torch's legacy (pre-zip) format: a protocol-2 pickle
LEGACY_MAGIC = b"\x80\x02"


def load_checkpoint(path) -> Dict[str, Any]:
    """A checkpoint's raw state on CPU, under torch's safe ``weights_only=True`` unpickler.

    FileNotFoundError for a missing file; ValueError, in one line naming the file, for an
    empty, truncated or damaged file, one that is not a torch checkpoint, or one without a
    fairseq model."""
    allow_fairseq_checkpoint_types()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise ValueError(f"{path} is empty: not a checkpoint")
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is truncated or damaged: a zip archive without its central directory")
    if not head.startswith(b"PK") and not head.startswith(LEGACY_MAGIC):
        raise ValueError(f"{path} is not a torch checkpoint (neither torch's zip format nor its legacy format)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's notes on pickle protocols
            state = torch.load(path, map_location="cpu", weights_only=True)
    except EOFError as err:
        raise ValueError(f"{path} is truncated: {_first_line(err) or 'it ends early'}") from None
    except pickle.UnpicklingError:
        raise ValueError(f"{path} holds objects that torch's safe loader refuses: not a fairseq checkpoint "
                         f"of this plugin") from None
    except (RuntimeError, OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable torch checkpoint (truncated or damaged?): "
                         f"{_first_line(err)}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a fairseq checkpoint (no 'model' entry)")
    return state


def _first_line(err: BaseException) -> str:
    """The first line of an error's message, at most 160 characters."""
    text = str(err).strip().splitlines()
    return text[0][:160] if text else type(err).__name__


def save_atomically(state: Dict[str, Any], path) -> int:
    """Write ``state`` to ``path`` through a temporary file in the same folder, so that an
    error or an interrupt leaves no partial file; return the size in bytes."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path).stat().st_size

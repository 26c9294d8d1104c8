"""Reading and writing fairseq checkpoints: safe loading, atomic saving."""

from pathlib import Path
from typing import Any, Dict

import torch

from un_tools.atomic import atomic_path
from .checkpoint_safety import allow_fairseq_checkpoint_types


def load_checkpoint(path) -> Dict[str, Any]:
    """A checkpoint's raw state on CPU, under torch's safe ``weights_only=True`` unpickler."""
    allow_fairseq_checkpoint_types()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except EOFError as err:
        raise ValueError(f"{path} is truncated or empty: {err}") from err
    except RuntimeError as err:
        raise ValueError(f"{path} is not a readable torch checkpoint: {err}") from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a fairseq checkpoint (no 'model' entry)")
    return state


def save_atomically(state: Dict[str, Any], path) -> int:
    """Write ``state`` to ``path`` through a temporary file in the same folder, so that an
    error or an interrupt leaves no partial file; return the size in bytes."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path).stat().st_size

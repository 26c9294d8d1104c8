"""The layout of an ``un-export`` folder, shared by the exporter (which writes it) and the
translator (which reads it): file names, graph input and output names, and the manifest.

Standard library only.
"""

import json
from pathlib import Path
from typing import Any, Dict

FORMAT = "un-fairseq-onnx/1"
MANIFEST = "manifest.json"
ENCODER = "encoder.onnx"
DECODER_STEP = "decoder_step.onnx"
SOURCE_DICT = "dict.src.txt"
TARGET_DICT = "dict.tgt.txt"

#: ``B`` sentences (hypotheses in the decoder), ``S`` source tokens, ``T`` cached target
#: tokens, ``L`` decoder layers, ``H`` heads, ``D`` channels per head, ``C`` model channels.
ENCODER_INPUTS = {"src_tokens": ("int64", ["B", "S"]), "src_lengths": ("int64", ["B"])}
ENCODER_OUTPUTS = {
    "encoder_out": ("float32", ["B", "S", "C"]),
    "encoder_padding_mask": ("bool", ["B", "S"]),
    "cross_k": ("float32", ["L", "B", "H", "S", "D"]),
    "cross_v": ("float32", ["L", "B", "H", "S", "D"]),
}
DECODER_INPUTS = {
    "tokens": ("int64", ["B"]),
    "step": ("int64", []),
    "cache_k": ("float32", ["L", "B", "H", "T", "D"]),
    "cache_v": ("float32", ["L", "B", "H", "T", "D"]),
    "cross_k": ("float32", ["L", "B", "H", "S", "D"]),
    "cross_v": ("float32", ["L", "B", "H", "S", "D"]),
    "encoder_padding_mask": ("bool", ["B", "S"]),
}
DECODER_OUTPUTS = {
    "log_probs": ("float32", ["B", "V"]),
    "new_cache_k": ("float32", ["L", "B", "H", "T+1", "D"]),
    "new_cache_v": ("float32", ["L", "B", "H", "T+1", "D"]),
}


#: what installs the runtime (and the exporter)
INSTALL_EXTRA = "pip install 'un-fairseq[export]'"


class ExportError(ValueError):
    """An export folder that cannot be used, with the reason."""


class MissingDependency(ImportError):
    """An optional dependency that is not installed, with the command that installs it."""

    def __init__(self, what: str, name: str) -> None:
        super().__init__(f"{what} needs {name}, which is not installed: {INSTALL_EXTRA}")


def import_onnxruntime():
    """``onnxruntime``, or :class:`MissingDependency` naming the install command."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency("un-translate", "onnxruntime") from None
    return onnxruntime


def load_manifest(folder) -> Dict[str, Any]:
    """The manifest of an ``un-export`` folder, checked for the files it names."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportError(f"{folder} is not an un-export folder: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ExportError(f"{path} is not valid JSON: {err}") from err
    if manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: format {manifest.get('format')!r}, this translator reads {FORMAT!r}")
    for name in (ENCODER, DECODER_STEP, SOURCE_DICT, TARGET_DICT):
        if not (folder / name).is_file():
            raise ExportError(f"{folder} lacks {name}")
    return manifest

"""The layout of an ``un-export`` folder, shared by the exporter (which writes it) and the
translator (which reads it): file names, graph input and output names, and the manifest.

Standard library only.
"""

import json
from pathlib import Path
from typing import Any, Dict, List

FORMAT = "un-fairseq-onnx/3"
MANIFEST = "manifest.json"
ENCODER = "encoder.onnx"
DECODER_STEP = "decoder_step.onnx"
SOURCE_DICT = "dict.src.txt"
TARGET_DICT = "dict.tgt.txt"
#: the sentencepiece model stored by ``un-export --spm`` (the manifest's ``sentencepiece`` entry)
SPM_MODEL = "sentencepiece.model"

#: the largest beam an export serves unless ``un-export --max-beam`` says otherwise: each
#: decoder step keeps ``2 x`` this many candidates per row
DEFAULT_MAX_BEAM = 10

#: ``B`` sentences, ``N = B x W`` decoder rows (``W`` per sentence: the beam), ``S`` source
#: tokens, ``M`` positions of the self-attention buffers (more than the step), ``H`` heads,
#: ``D`` channels per head, ``C`` model channels, ``V`` target vocabulary, ``K`` candidates
#: per row. A name with ``{i}`` stands for one tensor per decoder layer ``i = 0 .. L-1``, in
#: that order.
ENCODER_INPUTS = {"src_tokens": ("int64", ["B", "S"]), "src_lengths": ("int64", ["B"])}
ENCODER_OUTPUTS = {
    "encoder_out": ("float32", ["B", "S", "C"]),
    "encoder_padding_mask": ("bool", ["B", "S"]),
    "cross_k_{i}": ("float32", ["B", "H", "S", "D"]),
    "cross_v_{i}": ("float32", ["B", "H", "S", "D"]),
}
DECODER_INPUTS = {
    "tokens": ("int64", ["N"]),
    "step": ("int64", []),
    "token_bias": ("float32", ["V"]),
    "encoder_padding_mask": ("bool", ["B", "S"]),
    "cross_k_{i}": ("float32", ["B", "H", "S", "D"]),
    "cross_v_{i}": ("float32", ["B", "H", "S", "D"]),
    "cache_indirection": ("int32", ["B", "W", "M"]),
    "past_k_{i}": ("float32", ["N", "H", "M", "D"]),
    "past_v_{i}": ("float32", ["N", "H", "M", "D"]),
}
DECODER_OUTPUTS = {
    "cand_log_probs": ("float32", ["N", "K"]),
    "cand_tokens": ("int64", ["N", "K"]),
    "eos_log_probs": ("float32", ["N"]),
    "present_k_{i}": ("float32", ["N", "H", "M", "D"]),
    "present_v_{i}": ("float32", ["N", "H", "M", "D"]),
}


def names(spec: Dict[str, Any], layers: int) -> List[str]:
    """The graph's tensor names in order, each ``{i}`` name once per layer."""
    out: List[str] = []
    for name in spec:
        out += [name.format(i=i) for i in range(layers)] if "{i}" in name else [name]
    return out


#: what installs the runtime (and the exporter)
INSTALL_EXTRA = "pip install 'un-fairseq[export]'"


class ExportError(ValueError):
    """An export folder that cannot be used, with the reason."""


class MissingDependency(ImportError):
    """An optional dependency that is not installed, with the command that installs it."""

    def __init__(self, what: str, name: str, install: str = INSTALL_EXTRA) -> None:
        super().__init__(f"{what} needs {name}, which is not installed: {install}")


class OutdatedDependency(MissingDependency):
    """An installed dependency older than the oldest that works, with the upgrade command."""

    def __init__(self, what: str, name: str, minimum: str, found: str, why: str) -> None:
        ImportError.__init__(self, f"{what} needs {name} >= {minimum} (found {found}: {why}): "
                                   f"pip install -U '{name}>={minimum}'")


#: the oldest onnxruntime whose CPU ``DecoderMaskedMultiHeadAttention`` (the decoder's
#: self-attention, format 3) translates correctly: 1.20 has the kernel but reads the beams'
#: histories wrongly (7 of 40 Multi30k sentences as 1.21-1.32 translate them; 1.21-1.32: 40 of 40)
MIN_ONNXRUNTIME = "1.21"


def _version(text: str):
    """``(major, minor)`` of a version string such as ``1.21.0`` or ``1.22.0.dev20250101``."""
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in text.split(".")[:2])


def import_onnxruntime():
    """``onnxruntime`` (at least :data:`MIN_ONNXRUNTIME`), or :class:`MissingDependency`
    naming the install command."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency("un-translate", "onnxruntime") from None
    if _version(onnxruntime.__version__) < _version(MIN_ONNXRUNTIME):
        raise OutdatedDependency("un-translate", "onnxruntime", MIN_ONNXRUNTIME, onnxruntime.__version__,
                                 "its decoder attention kernel translates wrongly")
    return onnxruntime


def is_export_file(name: str) -> bool:
    """Whether ``un-export`` writes a file of this name (a graph's external weights included)."""
    return (name in (MANIFEST, SOURCE_DICT, TARGET_DICT, SPM_MODEL)
            or any(name == graph or name.startswith(graph + ".") for graph in (ENCODER, DECODER_STEP)))


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
        raise ExportError(f"{path}: format {manifest.get('format')!r}, this translator reads {FORMAT!r}: "
                          f"export the checkpoint again with un-export")
    spm = (manifest.get("sentencepiece") or {}).get("file")
    for name in (ENCODER, DECODER_STEP, SOURCE_DICT, TARGET_DICT) + ((spm,) if spm else ()):
        if not (folder / name).is_file():
            raise ExportError(f"{folder} lacks {name}")
    return manifest

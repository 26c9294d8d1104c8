"""The exported encoder and decoder-step graphs in ONNX Runtime."""

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .manifest import DECODER_STEP, ENCODER, ExportError, import_onnxruntime, load_manifest


def session(ort, path: Path, options):
    """An ONNX Runtime CPU session of ``path``; :class:`ExportError` naming the file when
    ONNX Runtime cannot read it."""
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own pybind error types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ExportError(f"{path} is not a readable ONNX graph (damaged or truncated?): {first}") from None


class OnnxModel:
    """An ``un-export`` folder's two graphs, each an ONNX Runtime CPU session.

    ``threads``: intra-op threads of each session (None: ONNX Runtime's default).
    """

    def __init__(self, folder, threads: Optional[int] = None) -> None:
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.encoder = session(ort, self.folder / ENCODER, options)
        self.decoder = session(ort, self.folder / DECODER_STEP, options)
        shape = self.manifest["model"]
        self.cache_shape = (shape["decoder_layers"], shape["decoder_heads"], shape["decoder_head_dim"])

    def encode(self, src_tokens: np.ndarray, src_lengths: np.ndarray) -> Tuple[np.ndarray, ...]:
        """``B x S`` right-padded tokens and ``B`` lengths -> ``encoder_out`` (``B x S x C``),
        ``encoder_padding_mask`` (``B x S``), ``cross_k``, ``cross_v`` (``L x B x H x S x D``)."""
        return tuple(self.encoder.run(None, {"src_tokens": src_tokens.astype(np.int64),
                                             "src_lengths": src_lengths.astype(np.int64)}))

    def empty_cache(self, batch: int) -> np.ndarray:
        """A cache with no token yet: ``L x B x H x 0 x D``."""
        layers, heads, dim = self.cache_shape
        return np.zeros((layers, batch, heads, 0, dim), dtype=np.float32)

    def step(self, tokens: np.ndarray, step: int, cache_k: np.ndarray, cache_v: np.ndarray,
             cross_k: np.ndarray, cross_v: np.ndarray, padding_mask: np.ndarray):
        """One decoder step: ``log_probs`` (``B x V``) and the caches grown by one token."""
        return self.decoder.run(None, {
            "tokens": tokens.astype(np.int64), "step": np.array(step, dtype=np.int64),
            "cache_k": cache_k, "cache_v": cache_v, "cross_k": cross_k, "cross_v": cross_v,
            "encoder_padding_mask": padding_mask})

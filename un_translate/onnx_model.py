"""The exported encoder and decoder-step graphs in ONNX Runtime."""

import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .manifest import DECODER_INPUTS, DECODER_STEP, ENCODER, ExportError, import_onnxruntime, load_manifest, names


#: ONNX Runtime's execution providers by default: the CPU (serving on CPUs is what the
#: session settings below are for; the GPU check passes CUDA's)
CPU_PROVIDERS = ("CPUExecutionProvider",)


def session(ort, path: Path, options, providers=CPU_PROVIDERS):
    """An ONNX Runtime session of ``path`` on ``providers``; :class:`ExportError` naming the
    file when ONNX Runtime cannot read it."""
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as err:  # onnxruntime raises its own pybind error types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ExportError(f"{path} is not a readable ONNX graph (damaged or truncated?): {first}") from None


SPINNING = ("auto", "on", "off")


def session_options(ort, threads: Optional[int], spinning: str = "auto"):
    """ONNX Runtime settings for CPU serving (``docs/export.md``, "Session settings").

    ``threads`` intra-op threads (None: ONNX Runtime's default, one per physical core); one
    inter-op thread and sequential execution (the graphs are chains: nothing runs in
    parallel); every graph optimisation (``ORT_ENABLE_ALL``: fusions such as MatMul + Add,
    GELU, attention pieces). ``spinning``: whether idle intra-op threads busy-wait for the
    next op; ``auto`` spins only when the threads fit in the cores the load average leaves
    free (spinning threads on oversubscribed cores steal the time of the threads doing work).
    """
    if spinning not in SPINNING:
        raise ValueError(f"spinning={spinning!r}: choose one of {', '.join(SPINNING)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    if spinning == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        spin = (threads or cores) + os.getloadavg()[0] <= cores + 0.5
    else:
        spin = spinning == "on"
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


class OnnxModel:
    """An ``un-export`` folder's two graphs, each an ONNX Runtime session on ``providers``
    (the CPU by default; :func:`session_options`)."""

    def __init__(self, folder, threads: Optional[int] = None, spinning: str = "auto",
                 providers=CPU_PROVIDERS) -> None:
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        ort = import_onnxruntime()
        options = session_options(ort, threads, spinning)
        self.encoder = session(ort, self.folder / ENCODER, options, providers)
        self.decoder = session(ort, self.folder / DECODER_STEP, options, providers)
        shape = self.manifest["model"]
        self.layers, self.heads, self.head_dim = (shape["decoder_layers"], shape["decoder_heads"],
                                                  shape["decoder_head_dim"])
        self.candidates = shape["candidates_per_row"]
        self._cross = names(DECODER_INPUTS, self.layers)[4:4 + 2 * self.layers]
        self._cache = names(DECODER_INPUTS, self.layers)[4 + 2 * self.layers:]

    def encode(self, src_tokens: np.ndarray, src_lengths: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        """``B x S`` right-padded tokens and ``B`` lengths -> ``encoder_padding_mask``
        (``B x S``) and the cross-attention keys and values, ``[k_0, .., k_L-1, v_0, ..]``
        (each ``B x H x S x D``)."""
        out = self.encoder.run(None, {"src_tokens": src_tokens.astype(np.int64),
                                      "src_lengths": src_lengths.astype(np.int64)})
        return out[1], out[2:]

    def empty_cache(self, rows: int) -> List[np.ndarray]:
        """Caches with no token yet: ``[k_0, .., k_L-1, v_0, ..]``, each ``rows x H x 0 x D``."""
        return [np.zeros((rows, self.heads, 0, self.head_dim), dtype=np.float32) for _ in range(2 * self.layers)]

    def step(self, tokens: np.ndarray, step: int, token_bias: np.ndarray, padding_mask: np.ndarray,
             cross: List[np.ndarray], cache: List[np.ndarray]):
        """One decoder step: ``cand_log_probs``, ``cand_tokens`` (``N x K``), ``eos_log_probs``
        (``N``) and the caches grown by one token (``[k_0, .., v_0, ..]``)."""
        feed = {"tokens": tokens.astype(np.int64), "step": np.array(step, dtype=np.int64),
                "token_bias": token_bias, "encoder_padding_mask": padding_mask}
        feed.update(zip(self._cross, cross))
        feed.update(zip(self._cache, cache))
        out = self.decoder.run(None, feed)
        return out[0], out[1], out[2], out[3:]

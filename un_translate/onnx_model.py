"""The exported encoder and decoder-step graphs in ONNX Runtime."""

import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .manifest import (DECODER_INPUTS, DECODER_OUTPUTS, DECODER_STEP, ENCODER, ExportError, import_onnxruntime,
                       load_manifest, names)


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


#: the self-attention buffers' first capacity (positions); they double when a step needs more
FIRST_CAPACITY = 32


class DecoderState:
    """What one batch's decoder steps share: the sentences' encoder outputs, the
    self-attention buffers that ONNX Runtime writes in place, and the session's I/O binding.

    ``padding_mask`` ``B x S`` and ``cross`` (``[k_0, .., v_0, ..]``, each ``B x H x S x D``)
    per live sentence; ``past`` (``[k_0, .., v_0, ..]``, each ``N x H x M x D``, ``N = B x W``:
    the first ``N`` rows of buffers allocated for the first batch) and ``indirection``
    ``B x W x M`` (int32: the row of its sentence each row reads each earlier position from).
    The binding of what changes only when sentences leave or the buffers grow (``cross``,
    the mask, the buffers as both ``past_*`` and ``present_*``) is renewed only then.
    """

    def __init__(self, model: "OnnxModel", padding_mask: np.ndarray, cross: List[np.ndarray], width: int,
                 capacity: int, max_width: int) -> None:
        self._model, self.io = model, model.decoder.io_binding()
        self.padding_mask, self.cross, self.width = padding_mask, cross, width
        batch = padding_mask.shape[0]
        self._store = [np.zeros((batch * max(width, max_width), model.heads, capacity, model.head_dim),
                                dtype=np.float32) for _ in cross]
        self.past = [store[:batch * width] for store in self._store]
        self.indirection = np.zeros((batch, width, capacity), dtype=np.int32)
        self._bind()

    def _bind(self) -> None:
        io, m = self.io, self._model
        for name in m.candidate_names:  # first, so that get_outputs() lists them first
            io.bind_output(name)
        for name, value in (("encoder_padding_mask", self.padding_mask), *zip(m.cross_names, self.cross)):
            io.bind_cpu_input(name, value)
        self._bound = [m.ort.OrtValue.ortvalue_from_numpy(p) for p in self.past]  # over the same memory
        for past, present, value in zip(m.past_names, m.present_names, self._bound):
            io.bind_ortvalue_input(past, value)
            io.bind_ortvalue_output(present, value)  # written in place

    @property
    def capacity(self) -> int:
        return self.indirection.shape[2]

    def reserve(self, positions: int) -> None:
        """Make room for ``positions`` positions (the capacity doubles until it fits)."""
        if positions <= self.capacity:
            return
        capacity = self.capacity
        while capacity < positions:
            capacity *= 2
        old = self.capacity
        self._store = [np.zeros(store.shape[:2] + (capacity,) + store.shape[3:], dtype=np.float32)
                       for store in self._store]
        for grown, p in zip(self._store, self.past):
            grown[:len(p), :, :old] = p
        self.past = [store[:len(p)] for store, p in zip(self._store, self.past)]
        indirection = np.zeros(self.indirection.shape[:2] + (capacity,), dtype=np.int32)
        indirection[:, :, :old] = self.indirection
        self.indirection = indirection
        self._bind()

    def reorder(self, step: int, parents: np.ndarray, keep: Optional[np.ndarray] = None) -> None:
        """After step ``step``: row ``w`` of each sentence continues the hypothesis of its row
        ``parents[b, w]`` (``B' x W'``); ``keep`` (local indices, or None for all) the
        sentences that go on. Only when sentences leave are buffer rows moved (to the front
        of the same memory, positions ``<= step``); otherwise only the small indirection
        table changes. A state of one row per sentence (the first step) widens to ``W'``
        rows: each sentence's row moves to the first of its ``W'`` rows, which all read it."""
        if keep is not None:
            rows = (keep[:, None] * self.width + np.arange(self.width)).reshape(-1)
            for store in self._store:
                store[:len(rows), :, :step + 1] = store[rows, :, :step + 1]
            self.past = [store[:len(rows)] for store in self._store]
            self.indirection = self.indirection[keep]
            self.padding_mask = np.ascontiguousarray(self.padding_mask[keep])
            self.cross = [np.ascontiguousarray(c[keep]) for c in self.cross]
        width = parents.shape[1]
        widen = width != self.width
        if widen:
            if self.width != 1:
                raise ValueError(f"a state of {self.width} rows per sentence cannot become {width}")
            batch = self.indirection.shape[0]
            for store in self._store:  # row b -> row b x width; row 0 stays, so copy first
                store[:batch * width:width, :, :step + 1] = store[:batch, :, :step + 1].copy()
            self.past = [store[:batch * width] for store in self._store]
            self.indirection = np.zeros((batch, width, self.capacity), dtype=np.int32)
            self.width = width
        if keep is not None or widen:
            self._bind()
        self.indirection = np.take_along_axis(self.indirection, parents[:, :, None].astype(np.int32), axis=1)
        self.indirection[:, :, step] = parents


class OnnxModel:
    """An ``un-export`` folder's two graphs, each an ONNX Runtime session on ``providers``
    (the CPU by default; :func:`session_options`)."""

    def __init__(self, folder, threads: Optional[int] = None, spinning: str = "auto",
                 providers=CPU_PROVIDERS) -> None:
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        self.ort = ort = import_onnxruntime()
        options = session_options(ort, threads, spinning)
        self.encoder = session(ort, self.folder / ENCODER, options, providers)
        self.decoder = session(ort, self.folder / DECODER_STEP, options, providers)
        shape = self.manifest["model"]
        self.layers, self.heads, self.head_dim = (shape["decoder_layers"], shape["decoder_heads"],
                                                  shape["decoder_head_dim"])
        self.candidates = shape["candidates_per_row"]
        inputs, outputs = names(DECODER_INPUTS, self.layers), names(DECODER_OUTPUTS, self.layers)
        self.cross_names = inputs[4:4 + 2 * self.layers]
        self.past_names = inputs[5 + 2 * self.layers:]
        self.candidate_names, self.present_names = outputs[:3], outputs[3:]

    def encode(self, src_tokens: np.ndarray, src_lengths: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        """``B x S`` right-padded tokens and ``B`` lengths -> ``encoder_padding_mask``
        (``B x S``) and the cross-attention keys and values, ``[k_0, .., k_L-1, v_0, ..]``
        (each ``B x H x S x D``)."""
        out = self.encoder.run(None, {"src_tokens": src_tokens.astype(np.int64),
                                      "src_lengths": src_lengths.astype(np.int64)})
        return out[1], out[2:]

    def start(self, padding_mask: np.ndarray, cross: List[np.ndarray], width: int,
              capacity: Optional[int] = None, max_width: int = 1) -> DecoderState:
        """The decoder state of a batch with ``width`` rows per sentence and nothing cached
        (room for ``max_width`` rows per sentence: beam search starts at one row per sentence
        and widens to the beam after the first step); buffers of ``capacity`` positions
        (default :data:`FIRST_CAPACITY`) to begin with."""
        return DecoderState(self, np.ascontiguousarray(padding_mask), [np.ascontiguousarray(c) for c in cross],
                            width, capacity or FIRST_CAPACITY, max_width)

    def step(self, state: DecoderState, tokens: np.ndarray, step: int, token_bias: np.ndarray):
        """One decoder step for the ``N = B x W`` rows of ``state`` (``tokens`` ``N``): writes
        position ``step`` of the buffers and returns ``cand_log_probs``, ``cand_tokens``
        (``N x K``) and ``eos_log_probs`` (``N``)."""
        state.reserve(step + 1)
        io = state.io
        feed = (("tokens", np.ascontiguousarray(tokens, dtype=np.int64)), ("step", np.array(step, dtype=np.int64)),
                ("token_bias", token_bias), ("cache_indirection", state.indirection))
        for name, value in feed:
            io.bind_cpu_input(name, value)
        for name in self.candidate_names:  # a fresh output each step (rebinding keeps the order)
            io.bind_output(name)
        self.decoder.run_with_iobinding(io)
        out = io.get_outputs()
        return out[0].numpy(), out[1].numpy(), out[2].numpy()

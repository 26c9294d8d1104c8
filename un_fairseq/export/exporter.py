"""From a ``transformer_un`` checkpoint to an ``un-export`` folder: fold, export, check.

Exporter: ``torch.onnx.export(..., dynamo=True)``, torch's default since 2.9, which handles
both graphs here (dynamic batch, source and cache lengths, an empty cache included); the
TorchScript exporter is not used.
"""

import hashlib
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import onnx
import torch
from torch import nn

from un_translate import manifest as layout

from .. import fold
from . import int8
from .census import format_census, norm_op_counts, op_counts
from .graphs import DecoderStepGraph, EncoderGraph, candidates_per_row

#: beyond this many bytes of weights a graph keeps them in a ``.data`` file beside it (ONNX's
#: protobuf limit is 2 GiB)
INLINE_WEIGHTS_LIMIT = 1 << 30
DEFAULT_MAX_BEAM = layout.DEFAULT_MAX_BEAM


def prepare(state: Dict, data: Optional[str], keep_scale: bool = False, **verification):
    """Rebuild the checkpoint's model and fold it when every norm is foldable (offline, DyT,
    Derf, or the identity), with :func:`un_fairseq.fold.load_folded` (``verification``: its keyword
    arguments, as ``un-fuse`` passes them).

    Returns ``(task, model, reference, report)``: the model to export, the model as the
    checkpoint stored it (the reference of every check) and what was done. Raises
    ValueError when the fold changes the outputs by more than the tolerance.
    """
    result = fold.load_folded(state, data, keep_scale=keep_scale, **verification)
    report = {"norm_types": result.norm_types, "folded": result.folded, "scale_kept": keep_scale and result.folded}
    if result.folded:
        report["fold_check"] = result.check
    report["graph_norm_types"] = fold.norm_kinds(result.model)
    return result.task, result.model, result.reference, report


def _example_inputs(model: nn.Module, encoder: nn.Module, batch: int = 3, width: int = 2, src_len: int = 7,
                    step: int = 4, capacity: int = 9):
    """Inputs to trace with: sizes >= 2 and all different, so that none is specialised."""
    d = model.encoder.dictionary
    src = torch.randint(d.nspecial, len(d), (batch, src_len))
    lengths = torch.tensor([src_len] + [src_len - 2] * (batch - 1))
    with torch.no_grad():
        _, mask, *kv = encoder(src, lengths)
    layers = len(kv) // 2
    _, heads, _, dim = kv[0].shape
    rows = batch * width
    past = tuple(torch.zeros(rows, heads, capacity, dim) for _ in range(layers))
    indirection = torch.zeros(batch, width, capacity, dtype=torch.int32)
    tokens = torch.full((rows,), d.eos())
    bias = torch.zeros(len(model.decoder.dictionary))
    return ((src, lengths),
            (tokens, torch.tensor(step), bias, mask, tuple(kv[:layers]), tuple(kv[layers:]), indirection, past,
             tuple(c.clone() for c in past)))


def export_graphs(model: nn.Module, folder: Path, opset: Optional[int] = None, max_beam: int = DEFAULT_MAX_BEAM) -> None:
    """Write the encoder and decoder-step graphs of ``model`` (eval mode) into ``folder``;
    the step keeps ``2 * max_beam`` candidates per row (at most ``V``)."""
    from torch.export import Dim

    from .cached_attention import translation_table

    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" x 4
    batch, width, rows, src_len = Dim("batch"), Dim("width"), Dim("rows"), Dim("src_len")
    capacity = Dim("capacity")
    encoder = EncoderGraph(model).eval()
    decoder = DecoderStepGraph(model, max_beam).eval()
    enc_inputs, dec_inputs = _example_inputs(model, encoder)
    layers = len(model.decoder.layers)
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > INLINE_WEIGHTS_LIMIT
    per_sentence = tuple({0: batch, 2: src_len} for _ in range(layers))
    per_row = tuple({0: rows, 2: capacity} for _ in range(layers))
    graphs = (
        (encoder, enc_inputs, layout.ENCODER, layout.ENCODER_INPUTS, layout.ENCODER_OUTPUTS,
         ({0: batch, 1: src_len}, {0: batch})),
        (decoder, dec_inputs, layout.DECODER_STEP, layout.DECODER_INPUTS, layout.DECODER_OUTPUTS,
         ({0: rows}, None, None, {0: batch, 1: src_len}, per_sentence, per_sentence,
          {0: batch, 1: width, 2: capacity}, per_row, per_row)),
    )
    for module, inputs, filename, in_spec, out_spec, dynamic in graphs:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own deprecation notices
            torch.onnx.export(module, inputs, str(folder / filename), dynamo=True, verbose=False,
                              opset_version=opset, input_names=layout.names(in_spec, layers),
                              output_names=layout.names(out_spec, layers), dynamic_shapes=dynamic,
                              external_data=external, custom_translation_table=translation_table())
        onnx.checker.check_model(str(folder / filename), full_check=True)


def quantize(folder: Path) -> Dict:
    """Replace both graphs in ``folder`` by their int8 versions (:mod:`.int8`: every ``MatMul``
    whose second input is a weight, per-row activation scales, 7-bit weights per output
    channel). Returns what the manifest records."""
    out = {"method": int8.METHOD, "weight_bits": 7, "per_channel": True, "per_row_activations": True,
           "quantized_matmuls": {}}
    for name, filename in (("encoder", layout.ENCODER), ("decoder_step", layout.DECODER_STEP)):
        path = folder / filename
        graph = onnx.load(str(path))
        out["quantized_matmuls"][name] = int8.quantize_model(graph)
        onnx.checker.check_model(graph, full_check=True)
        tmp = folder / (filename + ".int8")
        onnx.save(graph, str(tmp))
        tmp.replace(path)
    return out


def write_dictionaries(task, folder: Path) -> Dict:
    """fairseq's dictionary files, and what the manifest says of them."""
    out = {}
    for side, d, filename, lang in (("source", task.source_dictionary, layout.SOURCE_DICT, "source_lang"),
                                    ("target", task.target_dictionary, layout.TARGET_DICT, "target_lang")):
        d.save(str(folder / filename))
        out[side] = {"file": filename, "language": getattr(getattr(task, "cfg", None), lang, None), "size": len(d),
                     "special_symbols": d.symbols[:d.nspecial],
                     "specials": {"bos": d.bos(), "pad": d.pad(), "eos": d.eos(), "unk": d.unk()}}
    return out


@torch.no_grad()
def check_with_onnxruntime(folder: Path, task, reference: nn.Module, tolerance: float,
                           seed: int = 1, batch: int = 4, width: int = 2, src_len: int = 11,
                           tgt_len: int = 7) -> float:
    """Largest ``|fairseq - ONNX Runtime|`` of the next-token candidates: the checkpoint's
    model (unfolded) teacher-forced over random tokens, ``width`` different target rows per
    sentence, against the exported graphs run step by step in ONNX Runtime (the rows of a
    sentence share its cross-attention keys and values). Each step's ``K`` candidates must
    be fairseq's best ``K`` log-probabilities (pad excluded) and eos's must match. Raises
    ValueError beyond ``tolerance * (1 + |x|)``."""
    from un_translate.onnx_model import OnnxModel

    gen = torch.Generator().manual_seed(seed)
    src_d, tgt_d = task.source_dictionary, task.target_dictionary
    lengths = torch.tensor([src_len] + [max(2, src_len - 3 * i) for i in range(1, batch)])
    src = torch.full((batch, src_len), src_d.pad())
    for row, n in enumerate(lengths.tolist()):
        src[row, :n - 1] = torch.randint(src_d.nspecial, len(src_d), (n - 1,), generator=gen)
        src[row, n - 1] = src_d.eos()
    prev = torch.randint(tgt_d.nspecial, len(tgt_d), (batch * width, tgt_len), generator=gen)
    prev[:, 0] = tgt_d.eos()
    rows = torch.arange(batch).repeat_interleave(width)
    enc = reference.encoder(src[rows], src_lengths=lengths[rows])
    expected = reference.get_normalized_probs(reference.decoder(prev, encoder_out=enc), log_probs=True)
    expected[:, :, tgt_d.pad()] = float("-inf")

    model = OnnxModel(folder, threads=1)
    mask, cross = model.encode(src.numpy(), lengths.numpy())
    state = model.start(mask, cross, width, capacity=max(2, tgt_len // 2))  # grows on the way
    same_rows = np.tile(np.arange(width), (batch, 1))
    bias = np.zeros(len(tgt_d), dtype=np.float32)
    bias[tgt_d.pad()] = -np.inf
    worst, bad = 0.0, 0
    for step in range(tgt_len):
        values, tokens, eos = model.step(state, prev[:, step].numpy(), step, bias)
        state.reorder(step, same_rows)
        ref = expected[:, step].double()
        top = ref.topk(values.shape[1], dim=-1).values.numpy()
        at_tokens = ref.gather(1, torch.from_numpy(tokens)).numpy()
        for want, got in ((top, values), (at_tokens, values), (ref[:, tgt_d.eos()].numpy(), eos)):
            finite = np.isfinite(want)
            if not np.array_equal(finite, np.isfinite(got)):
                bad += 1
                continue
            diff = np.abs(want[finite] - got[finite])
            worst = max(worst, float(diff.max(initial=0.0)))
            bad += int((diff > tolerance * (1 + np.abs(want[finite]))).sum())
    if bad and math.isfinite(tolerance):
        raise ValueError(f"ONNX Runtime differs from the checkpoint by up to {worst:.3g} in {bad} "
                         f"candidate log-probabilities (tolerance {tolerance:g} * (1 + |value|))")
    return worst


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def census(folder: Path) -> Dict[str, Dict[str, Dict[str, int]]]:
    """``{"ops": {graph: {op: count}}, "norm_ops": {graph: {op: count}}}`` of both graphs in
    ``folder``: every op, and the normalisation ops among them (:mod:`.census`)."""
    out = {"ops": {}, "norm_ops": {}}
    for name, filename in (("encoder", layout.ENCODER), ("decoder_step", layout.DECODER_STEP)):
        graph = onnx.load(str(folder / filename), load_external_data=False)
        out["ops"][name], out["norm_ops"][name] = op_counts(graph), norm_op_counts(graph)
    return out


def census_lines(counts: Dict[str, Dict[str, Dict[str, int]]]) -> List[str]:
    return [format_census(name, c, counts["norm_ops"][name]) for name, c in counts["ops"].items()]


def write_manifest(folder: Path, checkpoint: Optional[Path], model: nn.Module, report: Dict, dictionaries: Dict,
                   counts: Dict[str, Dict[str, Dict[str, int]]], ort_worst: Optional[float],
                   max_beam: int = DEFAULT_MAX_BEAM, sentencepiece: Optional[Dict] = None) -> Dict:
    """The JSON manifest: source, model shape, norms, graphs and their I/O, dictionaries, census,
    the stored sentencepiece model (``export.sentencepiece_model.store``; None: the folder
    translates pieces). ``checkpoint`` None: a model that came from no file (benchmarks)."""
    enc, dec = model.encoder, model.decoder
    attn = dec.layers[0].self_attn
    candidates = candidates_per_row(model, max_beam)
    opset = next(o.version for o in onnx.load(str(folder / layout.ENCODER), load_external_data=False).opset_import
                 if o.domain in ("", "ai.onnx"))
    io = lambda spec: {name: {"dtype": dtype, "shape": shape} for name, (dtype, shape) in spec.items()}  # noqa: E731
    manifest = {
        "format": layout.FORMAT,
        "source_checkpoint": None if checkpoint is None else {
            "file": checkpoint.name, "sha256": sha256(checkpoint), "bytes": checkpoint.stat().st_size},
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "api": "torch.onnx.export(dynamo=True)",
                     "opset": opset},
        "norms": {**report, "normalisation_ops_in_graphs": counts["norm_ops"]},
        "model": {
            "arch": model.args.arch if getattr(model, "args", None) is not None else type(model).__name__,
            "embed_dim": enc.embed_tokens.embedding_dim, "encoder_layers": len(enc.layers),
            "decoder_layers": len(dec.layers), "decoder_heads": attn.num_heads,
            "decoder_head_dim": attn.head_dim, "max_source_positions": enc.max_positions(),
            "max_decoder_positions": model.max_decoder_positions(),
            "candidates_per_row": candidates,
        },
        "graphs": {
            "encoder": {"file": layout.ENCODER, "bytes": _size(folder, layout.ENCODER),
                        "inputs": io(layout.ENCODER_INPUTS), "outputs": io(layout.ENCODER_OUTPUTS)},
            "decoder_step": {"file": layout.DECODER_STEP, "bytes": _size(folder, layout.DECODER_STEP),
                             "inputs": io(layout.DECODER_INPUTS), "outputs": io(layout.DECODER_OUTPUTS)},
        },
        "dictionaries": dictionaries,
        "sentencepiece": sentencepiece,
        "census": counts["ops"],
        "onnxruntime_check": None if ort_worst is None else {"largest_log_prob_difference": ort_worst},
        "int8": report.get("int8"),
    }
    (folder / layout.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _size(folder: Path, filename: str) -> int:
    """Bytes of a graph with its external weights, if any."""
    return sum(p.stat().st_size for p in folder.glob(filename + "*"))

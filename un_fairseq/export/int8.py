"""int8 weight matmuls with per-row activation scales: exact integer arithmetic on every x86 CPU.

Each ``MatMul`` of an activation ``X`` (``... x M x K``) by a weight ``W`` (``K x N``, an
initializer) becomes::

    s_x = max_k |X[m, k]| / 127                      one scale per row m (per token)
    q_x = round(X / s_x) + 128                       uint8 in [1, 255], zero point 128
    s_w = max_k |W[k, n]| / 63                       one scale per output channel n
    q_w = round(W / s_w)                             int8 in [-63, 63] (7 bits)
    Y   = ((q_x - 128) @ q_w * s_w) * s_x

in ONNX ops: standard ones for the scales and ``QuantizeLinear``, and ONNX Runtime's
``MatMulIntegerToFloat`` (``com.microsoft``) for the integer product with its weight scale
(``MatMulInteger``, ``Cast`` and ``Mul`` in one kernel).

Why this and not ONNX Runtime's ``quantize_dynamic`` (``DynamicQuantizeMatMul``):

- **Batch invariance.** ``DynamicQuantizeMatMul`` quantises the whole activation matrix (every
  row of batch x beam) with one scale, so one sentence's rounding depends on the others in its
  batch. Here each row's scale is its own, and the integer product is exact, so a sentence
  translates the same whoever shares its batch.
- **The same integers on every CPU.** On x86 CPUs without VNNI (AVX2 only), ONNX Runtime's
  u8 x s8 kernels sum pairs of products in int16 (``vpmaddubsw``), which saturates for 8-bit
  weights (255 * 127 * 2 > 32767); with VNNI they do not. 7-bit weights bound a pair by
  255 * 63 * 2 = 32130, so both kernels compute the exact int32 product.

The scale of a row that is all zeros is clamped to ``TINY / 127``: the row quantises to zeros.
"""

from typing import Dict, List

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: largest |q| of an activation (symmetric int8 range, stored as uint8 around ZERO_POINT)
ACTIVATION_MAX = 127
ZERO_POINT = 128
#: largest |q| of a weight: 7 bits, so that u8 x s8 pair sums fit int16 (see the module doc)
WEIGHT_MAX = 63
#: lower bound of a row's max |x| (an all-zero row)
TINY = 1e-30

#: in the name of every node that scales a row (not in the ``MatMulIntegerToFloat``'s): the op census
#: tells this quantisation from a normalisation by it
ROW_SCALING_SCOPE = "/int8_rows/"

METHOD = "per-row activations (uint8, zero point 128), per-channel 7-bit int8 weights, MatMulIntegerToFloat"
#: ONNX Runtime's contrib domain, of ``MatMulIntegerToFloat``
MS_DOMAIN = "com.microsoft"


def quantize_weight(w: np.ndarray):
    """``(q_w int8 K x N, s_w float32 N)`` for a ``K x N`` weight: symmetric per output
    channel, ``|q_w| <= WEIGHT_MAX``; a zero column gets scale 1."""
    amax = np.abs(w).max(axis=0)
    scale = np.where(amax > 0, amax / WEIGHT_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    return q, scale


def _const(graph: onnx.GraphProto, name: str, array: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(array, name))
    return name


def _shared_constants(graph: onnx.GraphProto) -> Dict[str, str]:
    prefix = "int8_rows/"
    return {
        "axes": _const(graph, prefix + "axes", np.array([-1], dtype=np.int64)),
        "tiny": _const(graph, prefix + "tiny", np.array(TINY, dtype=np.float32)),
        "qmax": _const(graph, prefix + "qmax", np.array(ACTIVATION_MAX, dtype=np.float32)),
        "inv_qmax": _const(graph, prefix + "inv_qmax", np.array(1.0 / ACTIVATION_MAX, dtype=np.float32)),
        "one": _const(graph, prefix + "one", np.array(1.0, dtype=np.float32)),
        "zero_point": _const(graph, prefix + "zero_point", np.array(ZERO_POINT, dtype=np.uint8)),
    }


def _replacement(node: onnx.NodeProto, w_q: str, w_scale: str, c: Dict[str, str]) -> List[onnx.NodeProto]:
    """The nodes that compute ``node``'s output (same name) from its activation input.

    ``QuantizeLinear(x / s_x, 1, 128)`` rounds half to even and saturates to uint8, which
    never binds here (``|x / s_x| <= 127``); ONNX Runtime's ``MatMulIntegerToFloat`` is
    ``MatMulInteger``, the cast and the weight scale in one kernel."""
    x, y = node.input[0], node.output[0]
    base = node.name or y
    p = f"{base}{ROW_SCALING_SCOPE}"
    make = helper.make_node
    return [
        make("Abs", [x], [p + "abs"], name=p + "Abs"),
        make("ReduceMax", [p + "abs", c["axes"]], [p + "amax_raw"], name=p + "ReduceMax", keepdims=1),
        make("Max", [p + "amax_raw", c["tiny"]], [p + "amax"], name=p + "Max"),
        make("Div", [c["qmax"], p + "amax"], [p + "inv_scale"], name=p + "InvScale"),
        make("Mul", [p + "amax", c["inv_qmax"]], [p + "scale"], name=p + "Scale"),
        make("Mul", [x, p + "inv_scale"], [p + "scaled"], name=p + "ScaleX"),
        make("QuantizeLinear", [p + "scaled", c["one"], c["zero_point"]], [p + "q"], name=p + "QuantizeLinear"),
        make("MatMulIntegerToFloat", [p + "q", w_q, c["one"], w_scale, c["zero_point"]], [p + "per_channel"],
             name=f"{base}/MatMulIntegerToFloat", domain=MS_DOMAIN),
        make("Mul", [p + "per_channel", p + "scale"], [y], name=p + "RowScale"),
    ]


def quantize_model(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every ``MatMul`` of ``model``'s main graph whose second input is a
    float 2-D initializer; returns how many. The float weights that no other node reads go."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    targets = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits
               and inits[n.input[1]].data_type == TensorProto.FLOAT and len(inits[n.input[1]].dims) == 2]
    if not targets:
        return 0
    c = _shared_constants(graph)
    target_ids = {id(n) for n in targets}
    done: Dict[str, tuple] = {}
    nodes: List[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) not in target_ids:
            nodes.append(node)
            continue
        w = node.input[1]
        if w not in done:
            q, scale = quantize_weight(numpy_helper.to_array(inits[w]).astype(np.float64))
            done[w] = (_const(graph, w + "/int8", q), _const(graph, w + "/int8_scale", scale))
        nodes.extend(_replacement(node, *done[w], c))
    del graph.node[:]
    graph.node.extend(nodes)
    still_read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in still_read]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(targets)

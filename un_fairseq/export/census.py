"""Op census of an ONNX graph, and the ops that mean "a normalisation is computed here".

A norm over channels lowers either to a normalisation op or to the statistics and the
arithmetic it needs: a mean or sum (of squares) over the channels, a power, a square root, a
reciprocal or a division. Attention needs none of them here: the ``D^-1/2`` query scaling is
a constant multiply and ``Softmax``/``LogSoftmax`` are ops of their own (over keys and the
vocabulary, not over channels). So a graph with none of :data:`NORM_OPS` computes no norm.

One exception is made, by node name: the int8 rewrite (:mod:`.int8`) scales each row of a
matmul's input by its own max |x| (a ``ReduceMax`` over channels and a ``Div``). That is
quantisation, not a learned normalisation, and :func:`norm_op_counts` leaves those nodes out.
"""

from collections import Counter
from typing import Dict, Iterable

import onnx

from .int8 import ROW_SCALING_SCOPE

NORM_OPS = (
    # normalisation ops of the ONNX standard and of ONNX Runtime's contrib domain
    "LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "RMSNormalization", "BatchNormalization",
    "InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization", "LpNormalization",
    # what a norm lowers to: statistics over channels and their arithmetic
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2",
    "Pow", "Sqrt", "Reciprocal", "Div",
)


def op_counts(model: onnx.ModelProto, skip_scope: str = "") -> Dict[str, int]:
    """``{op type: count}`` over the graph and every subgraph and local function, most first;
    nodes whose name contains ``skip_scope`` (when given) are not counted."""
    counts: Counter = Counter()

    def walk(nodes: Iterable[onnx.NodeProto]) -> None:
        for node in nodes:
            if skip_scope and skip_scope in node.name:
                continue
            counts[node.op_type] += 1
            for attr in node.attribute:
                for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(graph.node)

    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)
    return dict(counts.most_common())


def norm_ops(counts: Dict[str, int]) -> Dict[str, int]:
    """The entries of ``counts`` that are normalisation ops (empty: no norm in the graph)."""
    return {op: n for op, n in counts.items() if op in NORM_OPS}


def norm_op_counts(model: onnx.ModelProto) -> Dict[str, int]:
    """The normalisation ops of ``model``, the int8 rewrite's row scaling left out."""
    return norm_ops(op_counts(model, skip_scope=ROW_SCALING_SCOPE))


def format_census(name: str, counts: Dict[str, int], found: Dict[str, int]) -> str:
    """One line per graph: its op types and counts, then its normalisation ops ``found``."""
    ops = ", ".join(f"{op} {n}" for op, n in counts.items())
    verdict = ("normalisation ops: " + ", ".join(f"{op} {n}" for op, n in found.items())) if found \
        else "normalisation ops: none"
    return f"{name}: {sum(counts.values())} nodes: {ops}\n  {verdict}"

"""Op census of an ONNX graph, and the ops that mean "a normalisation is computed here".

A norm over channels lowers either to a normalisation op or to the statistics and the
arithmetic it needs: a mean or sum (of squares) over the channels, a power, a square root, a
reciprocal or a division. Attention needs none of them here: the ``D^-1/2`` query scaling is
a constant multiply and ``Softmax``/``LogSoftmax`` are ops of their own (over keys and the
vocabulary, not over channels). So a graph with none of :data:`NORM_OPS` computes no norm.
"""

from collections import Counter
from typing import Dict, Iterable

import onnx

NORM_OPS = (
    # normalisation ops of the ONNX standard and of ONNX Runtime's contrib domain
    "LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "RMSNormalization", "BatchNormalization",
    "InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization", "LpNormalization",
    # what a norm lowers to: statistics over channels and their arithmetic
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2",
    "Pow", "Sqrt", "Reciprocal", "Div",
)


def op_counts(model: onnx.ModelProto) -> Dict[str, int]:
    """``{op type: count}`` over the graph and every subgraph and local function, most first."""
    counts: Counter = Counter()

    def walk(nodes: Iterable[onnx.NodeProto]) -> None:
        for node in nodes:
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


def format_census(name: str, counts: Dict[str, int]) -> str:
    """One line per graph: its op types and counts, then its normalisation ops."""
    found = norm_ops(counts)
    ops = ", ".join(f"{op} {n}" for op, n in counts.items())
    verdict = ("normalisation ops: " + ", ".join(f"{op} {n}" for op, n in found.items())) if found \
        else "normalisation ops: none"
    return f"{name}: {sum(counts.values())} nodes: {ops}\n  {verdict}"

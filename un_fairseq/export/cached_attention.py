"""The decoder's cached self-attention as one op: ONNX Runtime's CPU contrib op
``com.microsoft.DecoderMaskedMultiHeadAttention`` (DMMHA), exported from a torch custom op.

One decoder step of beam search, for ``N = B x W`` rows (``B`` sentences, ``W`` rows each,
adjacent), ``H`` heads of ``D`` channels (``C = H x D``), a cache of capacity ``M`` positions::

    past_k[n, :, t] = k[n],  past_v[n, :, t] = v[n]                 (written in place)
    src(n, j)       = b(n) x W + I[b(n), w(n), j]   for j < t,   src(n, t) = n
    out[n]          = softmax_j(q[n] . past_k[src(n, j), :, j]) past_v[src(n, j), :, j],  j <= t

with ``t`` the step, ``I`` the cache indirection (``B x W x M`` int32: which row of its
sentence each row reads position ``j`` from, so that beam search reorders rows by updating
``I`` instead of copying the caches), and ``q`` already scaled by ``D^-1/2`` (the op's
``scale`` is 1). This is attention over each row's beam-reordered history (Vaswani et al.,
2017); the newest token attends to every cached one, so no mask is needed.

The op's contract on ONNX Runtime's CPU provider (probed on onnxruntime 1.32; ``docs/export.md``):
float32 only; ``past_present_share_buffer = 1``; ``past_*`` and ``present_*`` are one
buffer, bound as the same ``OrtValue`` (IOBinding) so that the op writes position ``t`` in
place (with a plain ``run()`` it copies the whole buffer every step); ``past_sequence_length``
is ``t`` (int32 ``[1]``), ``beam_width`` is ``W`` (int32 ``[1]``); the present outputs must be
bound (leaving them out crashes the process).

The torch op (``torch.ops.un_export.cached_self_attention``) computes the same in eager
mode; :func:`translation_table` maps it to the ONNX op for ``torch.onnx.export(dynamo=True)``.
The torch op is defined when this module is imported (by :mod:`.graphs`); the ONNX side
needs ``onnx`` and ``onnxscript`` (the ``export`` extra) only when the exporter asks for it.
"""

import torch
from torch import Tensor

#: ONNX Runtime's contrib domain and the op's name there
DOMAIN, OP_NAME = "com.microsoft", "DecoderMaskedMultiHeadAttention"


@torch.library.custom_op("un_export::cached_self_attention", mutates_args=())
def cached_self_attention(q: Tensor, k: Tensor, v: Tensor, past_k: Tensor, past_v: Tensor, step: Tensor,
                          indirection: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """``q``, ``k``, ``v`` ``N x 1 x C`` (q scaled), ``past_k``, ``past_v`` ``N x H x M x D``,
    ``step`` int64 scalar ``t < M``, ``indirection`` ``B x W x M`` int32. Returns ``out``
    ``N x 1 x C`` and the caches with position ``t`` written (copies: torch ops return new
    tensors; ONNX Runtime writes in place)."""
    n, _, c = q.shape
    b, w, m = indirection.shape
    d, t = c // heads, int(step)
    past_k, past_v = past_k.clone(), past_v.clone()
    past_k[:, :, t], past_v[:, :, t] = k.reshape(n, heads, d), v.reshape(n, heads, d)
    src = (torch.arange(b)[:, None, None] * w + indirection.long()).reshape(n, m)[:, :t + 1].clone()
    src[:, t] = torch.arange(n)
    positions = torch.arange(t + 1)[None, :]
    keys, values = past_k[src, :, positions], past_v[src, :, positions]  # N x (t+1) x H x D
    scores = torch.einsum("nhd,njhd->nhj", q.reshape(n, heads, d), keys)
    out = torch.einsum("nhj,njhd->nhd", torch.softmax(scores.float(), dim=-1).type_as(q), values)
    return out.reshape(n, 1, c), past_k, past_v


@cached_self_attention.register_fake
def _(q, k, v, past_k, past_v, step, indirection, heads):
    return torch.empty_like(q), torch.empty_like(past_k), torch.empty_like(past_v)


def register_onnx_schema() -> None:
    """Declare the contrib op to ``onnx`` (which knows only the standard domains), so that the
    exporter's tracer can build its node; the inputs and outputs as ONNX Runtime defines them."""
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has(OP_NAME, DOMAIN):
        return
    param, optional = OpSchema.FormalParameter, OpSchema.FormalParameterOption.Optional
    inputs = [param("query", "T")] + [
        param(name, kind, param_option=optional)
        for name, kind in (("key", "T"), ("value", "T"), ("mask_index", "M"), ("attention_bias", "T"),
                           ("past_key", "T"), ("past_value", "T"), ("past_sequence_length", "M"),
                           ("beam_width", "M"), ("cache_indirection", "M"), ("bias", "T"))]
    outputs = [param("output", "T"), param("present_key", "T", param_option=optional),
               param("present_value", "T", param_option=optional)]
    onnx.defs.register_schema(OpSchema(
        OP_NAME, DOMAIN, 1, inputs=inputs, outputs=outputs,
        type_constraints=[("T", ["tensor(float)"], "float32 only on the CPU"), ("M", ["tensor(int32)"], "")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, ""),
                    OpSchema.Attribute("past_present_share_buffer", OpSchema.AttrType.INT, ""),
                    OpSchema.Attribute("scale", OpSchema.AttrType.FLOAT, "")]))


def _to_onnx(q, k, v, past_k, past_v, step, indirection, heads: int):
    import onnxscript
    from onnxscript import INT32
    from onnxscript import opset18 as op

    contrib = onnxscript.values.Opset(DOMAIN, 1)
    past_length = op.Reshape(op.Cast(step, to=INT32.dtype), op.Constant(value_ints=[1]))
    beam_width = op.Cast(op.Shape(indirection, start=1, end=2), to=INT32.dtype)
    return getattr(contrib, OP_NAME)(q, k, v, None, None, past_k, past_v, past_length, beam_width, indirection,
                                     num_heads=heads, past_present_share_buffer=1, scale=1.0)


def translation_table():
    """``custom_translation_table`` for ``torch.onnx.export``: the torch op -> the contrib op."""
    register_onnx_schema()
    return {torch.ops.un_export.cached_self_attention.default: _to_onnx}

"""The two modules that ``un-export`` hands to ``torch.onnx.export``: the encoder and one
decoder step of beam search (format 2).

They compute fairseq's pre-norm inference math on plain tensors, in a form the exporter
traces without Python state (fairseq's ``incremental_state`` is a dictionary keyed by
per-module ids, and its decoder recomputes positions from the whole prefix). Norms,
embeddings and activations are the model's own modules; every linear layer becomes a
:class:`Projection` (a ``MatMul`` with a pre-transposed weight and an ``Add``: the form ONNX
Runtime's int8 quantiser rewrites). Dropout is off (inference). Layout is batch-first:

- ``B`` sentences, ``N = B x W`` decoder rows (``W`` per sentence, adjacent: the beam),
  ``S`` source tokens, ``M`` positions of the self-attention buffers, ``C``
  model channels, ``H`` heads of ``D = C / H`` channels, ``L`` decoder layers, ``V`` target
  vocabulary, ``K`` candidates per row.

Math (Vaswani et al., 2017, with fairseq's pre-norm ordering and scalings):

- embeddings ``x = embed_scale * E[token] + P[position]``, positions numbered from
  ``padding_idx + 1`` (fairseq's ``make_positions``), ``P`` the model's own table;
- attention ``softmax(q k^T) v`` with ``q = (x W_q + b_q) * D^-1/2`` (fairseq scales q after
  the projection; when ``D^-1/2`` is a power of two, e.g. ``D = 64``, the scaling is folded
  into ``W_q, b_q``, which is exact), masked keys at ``-inf``, the softmax in float32;
- each layer ``x = x + Attn(norm(x))``, then (decoder) ``x = x + CrossAttn(norm(x))``, then
  ``x = x + fc2(act(fc1(norm(x))))``; the final norm of each stack after its last layer.

What the graphs do that fairseq's modules do not (none changes a value beyond rounding):
the decoder's self-attention is one op over buffers written in place, which reads each
row's history through a cache indirection instead of reordering the caches by beam
(:mod:`.cached_attention`); q, k and v of a self-attention are one matmul (weights
concatenated), and so are the
cross-attention keys and values of every decoder layer (in the encoder graph, once per
sentence); the decoder's cross-attention folds the ``N / B`` rows of a sentence into its
query, so the keys and values are never repeated per beam; the step ends in log-softmax
plus fairseq-generate's token adjustments (``token_bias``) and a top-``K`` per row, so
only ``N x K`` candidates leave the graph.
"""

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .cached_attention import cached_self_attention


def position_table(embed_positions: Optional[nn.Module]) -> Optional[Tensor]:
    """The model's position-embedding rows (``rows x C``, row ``padding_idx + 1`` is the first
    position): fairseq's precomputed sinusoidal ``weights`` or a learned table's ``weight``."""
    if embed_positions is None:
        return None
    table = getattr(embed_positions, "weights", None)
    if table is None:
        table = embed_positions.weight
    return table.detach().float()


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``B x T x C`` -> ``B x H x T x D``."""
    b, t, c = x.shape
    return x.view(b, t, heads, c // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """``B x H x T x D`` -> ``B x T x C``."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def exact_power_of_two(value: float) -> bool:
    """Whether multiplying by ``value`` is exact in floating point (a power of two)."""
    return value > 0 and math.frexp(value)[0] == 0.5


def candidates_per_row(model: nn.Module, max_beam: int) -> int:
    """``K``: the candidates a decoder step keeps per row, ``2 x max_beam`` (at most ``V``)."""
    return min(2 * max_beam, model.decoder.output_projection.out_features)


class Projection(nn.Module):
    """Linear layers that read the same input, as one ``x @ W + b``: ``W`` is ``in x out``
    (the layers' weights transposed and concatenated), ``b`` their biases (zero where a
    layer has none); ``scales`` multiplies each layer's weight and bias (exact only for
    powers of two). Returns one tensor per layer, ``... x out_i``."""

    def __init__(self, linears: Sequence[nn.Linear], scales: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        scales = scales or [1.0] * len(linears)
        weights, biases = [], []
        for linear, scale in zip(linears, scales):
            w = linear.weight.detach().float()
            b = linear.bias.detach().float() if linear.bias is not None else torch.zeros(w.shape[0])
            weights.append(w * scale)
            biases.append(b * scale)
        self.sizes = [w.shape[0] for w in weights]
        self.register_buffer("weight", torch.cat(weights).t().contiguous())
        self.register_buffer("bias", torch.cat(biases))

    def forward(self, x: Tensor) -> List[Tensor]:
        y = torch.matmul(x, self.weight) + self.bias
        return list(y.split(self.sizes, dim=-1)) if len(self.sizes) > 1 else [y]


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> Tensor:
    """``softmax(q k^T) v`` per head: ``q`` ``B x H x Tq x D``, ``k``, ``v`` ``B x H x Tk x D``,
    ``mask`` ``B x Tk`` (True at padding) or None. Returns ``B x H x Tq x D``."""
    scores = torch.matmul(q, k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
    return torch.matmul(torch.softmax(scores.float(), dim=-1).type_as(q), v)


class SelfAttention(nn.Module):
    """fairseq's ``MultiheadAttention`` over its own input, q, k and v one matmul."""

    def __init__(self, mha: nn.Module) -> None:
        super().__init__()
        self.heads = mha.num_heads
        scaling = float(mha.scaling)
        folded = exact_power_of_two(scaling)
        self.q_scaling = None if folded else scaling  # applied after the matmul, as fairseq does
        self.qkv = Projection([mha.q_proj, mha.k_proj, mha.v_proj], [scaling if folded else 1.0, 1.0, 1.0])
        self.out = Projection([mha.out_proj])

    def scaled_qkv(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``B x T x C`` -> q (scaled), k, v, each ``B x T x C``."""
        q, k, v = self.qkv(x)
        if self.q_scaling is not None:
            q = q * self.q_scaling
        return q, k, v

    def project(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``B x T x C`` -> q (scaled), k, v, each ``B x H x T x D``."""
        return tuple(split_heads(t, self.heads) for t in self.scaled_qkv(x))


class CrossAttentionQuery(nn.Module):
    """The query and output side of a decoder layer's ``encoder_attn`` (its keys and values
    come from :class:`EncoderGraph`)."""

    def __init__(self, mha: nn.Module) -> None:
        super().__init__()
        self.heads = mha.num_heads
        scaling = float(mha.scaling)
        folded = exact_power_of_two(scaling)
        self.q_scaling = None if folded else scaling
        self.q = Projection([mha.q_proj], [scaling if folded else 1.0])
        self.out = Projection([mha.out_proj])

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """``x`` ``N x 1 x C`` (the rows of each sentence adjacent), ``k``, ``v``
        ``B x H x S x D``, ``mask`` ``B x S``. The ``N / B`` rows of a sentence are its
        queries: ``B x H x (N/B) x D``, so k and v are read once per sentence."""
        (q,) = self.q(x)
        if self.q_scaling is not None:
            q = q * self.q_scaling
        b, heads = k.shape[0], self.heads
        n, _, c = q.shape
        q = q.reshape(b, -1, heads, c // heads).transpose(1, 2)  # B x H x (N/B) x D
        ctx = attend(q, k, v, mask).transpose(1, 2).reshape(n, 1, c)
        return self.out(ctx)[0]


class FeedForward(nn.Module):
    """``x + fc2(act(fc1(norm(x))))`` of a fairseq layer; ``B x T x C``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.norm = layer.final_layer_norm
        self.activation_fn = layer.activation_fn
        self.fc1, self.fc2 = Projection([layer.fc1]), Projection([layer.fc2])

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.activation_fn(self.fc1(self.norm(x))[0]))[0]


class EncoderGraph(nn.Module):
    """Source tokens -> encoder output, padding mask, and every decoder layer's
    cross-attention keys and values (computed once per sentence, all layers one matmul).

    Inputs: ``src_tokens`` ``B x S`` (int64, right-padded), ``src_lengths`` ``B`` (int64:
    real tokens, eos included). Outputs: ``encoder_out`` ``B x S x C`` (after the final
    encoder norm; for a folded model that norm's affine map lives in the cross-attention
    projections, so this is the stack's output before it: after DyT's or Derf's ``f``), ``encoder_padding_mask`` ``B x S`` (bool, True at
    padding), then ``cross_k_i``, ``cross_v_i`` ``B x H x S x D`` for each decoder layer ``i``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        enc, dec = model.encoder, model.decoder
        self.embed_tokens = enc.embed_tokens
        self.padding_idx = enc.padding_idx
        self.embed_scale = float(enc.embed_scale)
        self.register_buffer("positions", position_table(enc.embed_positions), persistent=False)
        self.attn_norms = nn.ModuleList(layer.self_attn_layer_norm for layer in enc.layers)
        self.attn = nn.ModuleList(SelfAttention(layer.self_attn) for layer in enc.layers)
        self.ffn = nn.ModuleList(FeedForward(layer) for layer in enc.layers)
        self.final_norm = enc.layer_norm
        self.heads = dec.layers[0].encoder_attn.num_heads
        self.cross_kv = Projection([lin for layer in dec.layers
                                    for lin in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)])

    def forward(self, src_tokens: Tensor, src_lengths: Tensor):
        steps = torch.arange(src_tokens.size(1), device=src_tokens.device)
        padding_mask = steps[None, :] >= src_lengths[:, None]  # B x S
        real = (~padding_mask).long()
        x = self.embed_scale * self.embed_tokens(src_tokens)
        if self.positions is not None:  # make_positions: 1, 2, ... at real tokens, then + padding_idx
            x = x + self.positions[torch.cumsum(real, dim=1) * real + self.padding_idx]
        x = x * real.unsqueeze(-1).type_as(x)  # fairseq zeroes the padded embeddings
        for norm, attn, ffn in zip(self.attn_norms, self.attn, self.ffn):
            q, k, v = attn.project(norm(x))
            x = x + attn.out(merge_heads(attend(q, k, v, padding_mask)))[0]
            x = ffn(x)
        x = self.final_norm(x)
        kv = [split_heads(t, self.heads) for t in self.cross_kv(x)]  # k_0, v_0, k_1, v_1, ...
        return (x, padding_mask, *kv[0::2], *kv[1::2])


class DecoderStepGraph(nn.Module):
    """One decoder step of beam search over per-layer key/value buffers written in place: the
    best ``K`` next tokens of every row.

    Inputs: ``tokens`` ``N`` (int64: each row's newest target token; eos at the first step),
    ``step`` (int64 scalar: its 0-based position ``t``), ``token_bias`` ``V`` (float32,
    added to the log-probabilities: fairseq-generate's ``-inf`` at pad, ``-unk_penalty`` at
    unk, ``-inf`` at eos before ``min_len``), ``encoder_padding_mask`` ``B x S``,
    ``cross_k_i``, ``cross_v_i`` ``B x H x S x D`` (one per sentence), ``cache_indirection``
    ``B x W x M`` (int32, ``N = B x W``: which row of its sentence each row reads each earlier
    position from), ``past_k_i``, ``past_v_i`` ``N x H x M x D`` (positions ``< t`` filled,
    ``M > t``). Outputs: ``cand_log_probs`` ``N x K`` (float32, descending), ``cand_tokens``
    ``N x K`` (int64; equal values: lower token first), ``eos_log_probs`` ``N`` (eos's
    adjusted log-probability, for rows at their maximum length), then ``present_k_i``,
    ``present_v_i``: the buffers with position ``t`` written (in ONNX Runtime the same memory
    as ``past_*``: :mod:`.cached_attention`).
    fairseq's NaN -> ``-inf`` is left to the host (on the ``N x K`` candidates): finite
    logits give no NaN, and a pass over ``N x V`` for it cost 18% of an int8 step.
    """

    def __init__(self, model: nn.Module, max_beam: int) -> None:
        super().__init__()
        dec = model.decoder
        self.embed_tokens = dec.embed_tokens
        self.padding_idx, self.eos = dec.padding_idx, dec.dictionary.eos()
        self.embed_scale = float(dec.embed_scale)
        self.register_buffer("positions", position_table(dec.embed_positions), persistent=False)
        self.attn_norms = nn.ModuleList(layer.self_attn_layer_norm for layer in dec.layers)
        self.attn = nn.ModuleList(SelfAttention(layer.self_attn) for layer in dec.layers)
        self.cross_norms = nn.ModuleList(layer.encoder_attn_layer_norm for layer in dec.layers)
        self.cross = nn.ModuleList(CrossAttentionQuery(layer.encoder_attn) for layer in dec.layers)
        self.ffn = nn.ModuleList(FeedForward(layer) for layer in dec.layers)
        self.final_norm = dec.layer_norm
        self.output = Projection([dec.output_projection])
        self.candidates = candidates_per_row(model, max_beam)

    def forward(self, tokens: Tensor, step: Tensor, token_bias: Tensor, encoder_padding_mask: Tensor,
                cross_k: Tuple[Tensor, ...], cross_v: Tuple[Tensor, ...], cache_indirection: Tensor,
                past_k: Tuple[Tensor, ...], past_v: Tuple[Tensor, ...]):
        x = self.embed_scale * self.embed_tokens(tokens[:, None])  # N x 1 x C
        if self.positions is not None:
            x = x + self.positions[step + self.padding_idx + 1]
        present_k: List[Tensor] = []
        present_v: List[Tensor] = []
        for i in range(len(self.attn)):
            attn = self.attn[i]
            q, k, v = attn.scaled_qkv(self.attn_norms[i](x))
            ctx, k_i, v_i = cached_self_attention(q, k, v, past_k[i], past_v[i], step, cache_indirection, attn.heads)
            present_k.append(k_i)
            present_v.append(v_i)
            x = x + attn.out(ctx)[0]
            x = x + self.cross[i](self.cross_norms[i](x), cross_k[i], cross_v[i], encoder_padding_mask)
            x = self.ffn[i](x)
        logits = self.output(self.final_norm(x))[0][:, 0]
        lprobs = torch.log_softmax(logits.float(), dim=-1) + token_bias
        values, indices = torch.topk(lprobs, self.candidates, dim=-1)
        return (values, indices, lprobs[:, self.eos], *present_k, *present_v)

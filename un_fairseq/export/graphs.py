"""The two modules that ``un-export`` hands to ``torch.onnx.export``: the encoder and one
decoder step with an explicit key/value cache.

They hold no weights of their own: each reads the parameters of a (fused or online-norm)
``transformer_un`` model's fairseq layers and computes fairseq's pre-norm inference math on
plain tensors, in a form the exporter traces without Python state (fairseq's
``incremental_state`` is a dictionary keyed by per-module ids, and its decoder recomputes
positions from the whole prefix). Dropout is off (inference). Layout is batch-first:

- ``B`` sentences (beam hypotheses in the decoder), ``S`` source tokens, ``T`` cached
  target tokens, ``C`` model channels, ``H`` heads of ``D = C / H`` channels, ``L`` decoder
  layers, ``V`` target vocabulary.

Math (Vaswani et al., 2017, with fairseq's pre-norm ordering and scalings):

- embeddings ``x = embed_scale * E[token] + P[position]``, positions numbered from
  ``padding_idx + 1`` (fairseq's ``make_positions``), ``P`` the model's own table
  (sinusoidal or learned);
- attention ``softmax(q k^T) v`` with ``q = (x W_q + b_q) * D^-1/2`` (fairseq scales q after
  the projection; a constant multiply, so no square root appears in the graph), masked key
  positions set to ``-inf`` before the softmax, the softmax in float32;
- each layer ``x = x + Attn(norm(x))``, then (decoder) ``x = x + CrossAttn(norm(x))``, then
  ``x = x + fc2(act(fc1(norm(x))))``; the final norm of each stack after its last layer.

A norm is called as the model's own module: a :class:`NoNorm` after folding (nothing in the
graph), LayerNorm / RMSNorm / PowerNorm as they are (their ops appear in the graph).
"""

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn


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


class Attention(nn.Module):
    """fairseq's ``MultiheadAttention`` at inference, with keys and values passed in.

    ``mha`` is the fairseq module whose projections are used (not copied).
    """

    def __init__(self, mha: nn.Module) -> None:
        super().__init__()
        self.mha = mha
        self.heads = mha.num_heads
        self.scaling = float(mha.scaling)  # D^-1/2, a Python constant

    def keys_values(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``B x T x C`` -> keys and values, each ``B x H x T x D``."""
        return split_heads(self.mha.k_proj(x), self.heads), split_heads(self.mha.v_proj(x), self.heads)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, key_padding_mask: Optional[Tensor]) -> Tensor:
        """Queries from ``x`` (``B x Tq x C``) over ``k``, ``v`` (``B x H x Tk x D``);
        ``key_padding_mask``: ``B x Tk``, True at padding (None: attend everywhere).
        Returns ``B x Tq x C`` after the output projection."""
        q = split_heads(self.mha.q_proj(x) * self.scaling, self.heads)
        scores = torch.matmul(q, k.transpose(-1, -2))  # B x H x Tq x Tk
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).type_as(q)
        return self.mha.out_proj(merge_heads(torch.matmul(probs, v)))


def feed_forward(layer: nn.Module, x: Tensor) -> Tensor:
    """``x + fc2(act(fc1(norm(x))))`` of a fairseq layer; ``B x T x C``."""
    return x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))


class EncoderGraph(nn.Module):
    """Source tokens -> encoder output, padding mask, and every decoder layer's
    cross-attention keys and values (computed once per sentence).

    Inputs: ``src_tokens`` ``B x S`` (int64, right-padded), ``src_lengths`` ``B`` (int64:
    real tokens, eos included). Outputs: ``encoder_out`` ``B x S x C`` (after the final
    encoder norm; for a folded model that norm lives in the cross-attention projections, so
    this is the stack's output before it), ``encoder_padding_mask`` ``B x S`` (bool, True at
    padding), ``cross_k`` and ``cross_v`` ``L x B x H x S x D``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        enc = model.encoder
        self.encoder = enc
        self.padding_idx = enc.padding_idx
        self.embed_scale = float(enc.embed_scale)
        self.register_buffer("positions", position_table(enc.embed_positions), persistent=False)
        self.self_attn = nn.ModuleList(Attention(layer.self_attn) for layer in enc.layers)
        self.cross_attn = nn.ModuleList(Attention(layer.encoder_attn) for layer in model.decoder.layers)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor):
        enc = self.encoder
        steps = torch.arange(src_tokens.size(1), device=src_tokens.device)
        padding_mask = steps[None, :] >= src_lengths[:, None]  # B x S
        real = (~padding_mask).long()
        x = self.embed_scale * enc.embed_tokens(src_tokens)
        if self.positions is not None:  # make_positions: 1, 2, ... at real tokens, then + padding_idx
            x = x + self.positions[torch.cumsum(real, dim=1) * real + self.padding_idx]
        x = x * real.unsqueeze(-1).type_as(x)  # fairseq zeroes the padded embeddings
        for layer, attn in zip(enc.layers, self.self_attn):
            h = layer.self_attn_layer_norm(x)
            k, v = attn.keys_values(h)
            x = x + attn(h, k, v, padding_mask)
            x = feed_forward(layer, x)
        x = enc.layer_norm(x)
        kv = [attn.keys_values(x) for attn in self.cross_attn]
        return (x, padding_mask, torch.stack([k for k, _ in kv]), torch.stack([v for _, v in kv]))


class DecoderStepGraph(nn.Module):
    """One decoder step over a key/value cache: the log-probabilities of the next token.

    Inputs: ``tokens`` ``B`` (int64: the newest target token of each hypothesis; eos at the
    first step), ``step`` (int64 scalar: its 0-based position = ``T``, the cached tokens),
    ``cache_k``, ``cache_v`` ``L x B x H x T x D`` (``T`` may be 0), ``cross_k``, ``cross_v``
    ``L x B x H x S x D`` and ``encoder_padding_mask`` ``B x S`` from :class:`EncoderGraph`.
    Outputs: ``log_probs`` ``B x V`` (float32) and the grown caches ``L x B x H x (T+1) x D``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        dec = model.decoder
        self.decoder = dec
        self.padding_idx = dec.padding_idx
        self.embed_scale = float(dec.embed_scale)
        self.register_buffer("positions", position_table(dec.embed_positions), persistent=False)
        self.self_attn = nn.ModuleList(Attention(layer.self_attn) for layer in dec.layers)
        self.cross_attn = nn.ModuleList(Attention(layer.encoder_attn) for layer in dec.layers)

    def forward(self, tokens: Tensor, step: Tensor, cache_k: Tensor, cache_v: Tensor,
                cross_k: Tensor, cross_v: Tensor, encoder_padding_mask: Tensor):
        dec = self.decoder
        x = self.embed_scale * dec.embed_tokens(tokens[:, None])  # B x 1 x C
        if self.positions is not None:
            x = x + self.positions[step + self.padding_idx + 1]
        new_k: List[Tensor] = []
        new_v: List[Tensor] = []
        for i, (layer, attn, cross) in enumerate(zip(dec.layers, self.self_attn, self.cross_attn)):
            h = layer.self_attn_layer_norm(x)
            k, v = attn.keys_values(h)
            k, v = torch.cat([cache_k[i], k], dim=2), torch.cat([cache_v[i], v], dim=2)
            new_k.append(k)
            new_v.append(v)
            x = x + attn(h, k, v, None)  # the newest token sees every cached one and itself
            x = x + cross(layer.encoder_attn_layer_norm(x), cross_k[i], cross_v[i], encoder_padding_mask)
            x = feed_forward(layer, x)
        logits = dec.output_projection(dec.layer_norm(x))[:, 0]
        return torch.log_softmax(logits.float(), dim=-1), torch.stack(new_k), torch.stack(new_v)


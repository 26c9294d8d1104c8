"""``transformer_un``: fairseq's pre-norm Transformer with any normalizer of the paper's
Table 1 in every norm position.

Nothing of fairseq's layer code is copied: the encoder and decoder build fairseq's own
layers, then replace each norm attribute under its own name (``self_attn_layer_norm``,
``encoder_attn_layer_norm``, ``final_layer_norm`` in each layer, ``layer_norm`` at the end
of each stack), so checkpoints keep fairseq's parameter names. During training they hand
the padding mask (source or target, ``B x T``) to every norm through a context.
"""

from typing import Dict, List, Optional

from torch import Tensor, nn

from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import (
    TransformerConfig,
    TransformerDecoderBase,
    TransformerEncoderBase,
    TransformerModel,
    base_architecture,
    transformer_iwslt_de_en,
    transformer_vaswani_wmt_en_fr_big,
    transformer_wmt_en_de_big,
)

from .. import fp16_hooks
from ..modules import padding_context
from .norm_args import add_norm_args, make_norm_factory, set_norm_defaults, validate_norm_args

LAYER_NORM_NAMES = ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm")


def replace_norms(stack, cfg, side: str, num_heads: int) -> None:
    """Put the configured norm in every pre-norm position of an encoder or decoder stack."""
    make = make_norm_factory(cfg, side, num_heads)
    make_final = make_norm_factory(cfg, side, num_heads, final=True)
    for layer in stack.layers:
        for name in LAYER_NORM_NAMES:
            old = getattr(layer, name, None)
            if old is not None:
                setattr(layer, name, make(old.normalized_shape[0]))
    if stack.layer_norm is not None:
        stack.layer_norm = make_final(stack.layer_norm.normalized_shape[0])


class TransformerUNEncoder(TransformerEncoderBase):
    """fairseq's encoder with configurable norms; source padding reaches every norm."""

    def __init__(self, cfg, dictionary, embed_tokens, return_fc=False):
        super().__init__(cfg, dictionary, embed_tokens, return_fc=return_fc)
        replace_norms(self, cfg, "encoder", cfg.encoder.attention_heads)

    def forward(
        self,
        src_tokens,
        src_lengths: Optional[Tensor] = None,
        return_all_hiddens: bool = False,
        token_embeddings: Optional[Tensor] = None,
    ):
        mask = src_tokens.eq(self.padding_idx) if self.training else None
        with padding_context(self, mask):
            return super().forward(src_tokens, src_lengths, return_all_hiddens, token_embeddings)


class TransformerUNDecoder(TransformerDecoderBase):
    """fairseq's decoder with configurable norms; target padding reaches every norm."""

    def __init__(self, cfg, dictionary, embed_tokens, no_encoder_attn=False, output_projection=None):
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=no_encoder_attn,
                         output_projection=output_projection)
        replace_norms(self, cfg, "decoder", cfg.decoder.attention_heads)

    def build_output_projection(self, cfg, dictionary, embed_tokens):
        """fairseq's, except in a checkpoint written by un-fuse (``--fused-output-projection``):
        an untied ``C -> vocab`` linear with a bias, into which the final norm was folded."""
        super().build_output_projection(cfg, dictionary, embed_tokens)
        if getattr(cfg, "fused_output_projection", False):
            self.output_projection = nn.Linear(self.output_embed_dim, len(dictionary), bias=True)

    def extract_features(
        self,
        prev_output_tokens,
        encoder_out: Optional[Dict[str, List[Tensor]]],
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        full_context_alignment: bool = False,
        alignment_layer: Optional[int] = None,
        alignment_heads: Optional[int] = None,
    ):
        mask = None
        if self.training:
            tokens = prev_output_tokens if incremental_state is None else prev_output_tokens[:, -1:]
            mask = tokens.eq(self.padding_idx)
        with padding_context(self, mask):
            return super().extract_features(prev_output_tokens, encoder_out, incremental_state,
                                            full_context_alignment, alignment_layer, alignment_heads)


@register_model("transformer_un")
class TransformerUNModel(TransformerModel):
    """Pre-norm Transformer whose every norm is UN or any baseline of Table 1 (``--norm-type``)."""

    @staticmethod
    def add_args(parser):
        TransformerModel.add_args(parser)
        add_norm_args(parser)

    @classmethod
    def build_model(cls, args, task):
        transformer_un(args)  # fills what an older checkpoint's args may lack
        validate_norm_args(args)
        if getattr(args, "checkpoint_activations", False) or getattr(args, "offload_activations", False):
            raise ValueError(
                "--checkpoint-activations re-runs each layer's forward in the backward, which "
                "would update the normalizers' running statistics twice per step; train "
                "transformer_un without it"
            )
        return super().build_model(args, task)

    def set_num_updates(self, num_updates):
        """fairseq's trainer calls this before every training forward (and nothing else
        does): a run that trains with ``--fp16`` / ``--amp`` connects the norms to the
        optimizer's loss scale here (``fp16_hooks.py``)."""
        fp16_hooks.install_for(self.args)
        super().set_num_updates(num_updates)

    @classmethod
    def build_encoder(cls, args, src_dict, embed_tokens):
        return TransformerUNEncoder(TransformerConfig.from_namespace(args), src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        cfg = TransformerConfig.from_namespace(args)
        return TransformerUNDecoder(cfg, tgt_dict, embed_tokens, no_encoder_attn=cfg.no_cross_attention)


def _pre_norm(args) -> None:
    args.encoder_normalize_before = True
    args.decoder_normalize_before = True
    set_norm_defaults(args)


@register_model_architecture("transformer_un", "transformer_un")
def transformer_un(args):
    _pre_norm(args)
    base_architecture(args)


@register_model_architecture("transformer_un", "transformer_un_iwslt_de_en")
def transformer_un_iwslt_de_en(args):
    _pre_norm(args)
    transformer_iwslt_de_en(args)


@register_model_architecture("transformer_un", "transformer_un_wmt_en_de_big")
def transformer_un_wmt_en_de_big(args):
    _pre_norm(args)
    transformer_wmt_en_de_big(args)


@register_model_architecture("transformer_un", "transformer_un_vaswani_wmt_en_fr_big")
def transformer_un_vaswani_wmt_en_fr_big(args):
    _pre_norm(args)
    transformer_vaswani_wmt_en_fr_big(args)

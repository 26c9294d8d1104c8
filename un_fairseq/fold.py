"""Fold and load: the public API that ``un-fuse`` (a folded checkpoint) and ``un-export``
(folded ONNX graphs) both use.

An offline norm (UN, PN*, BN, MABN) is a fixed per-channel affine map at inference,
``y = a * x + b`` (``inference_scale()``; UN: paper Algorithm 1, ``a = gamma /
sqrt(running_var + eps)``, ``b = beta``). A linear ``W y + c`` that reads it becomes
``W' x + c'`` with ``W' = W * a`` (input columns scaled) and ``c' = c + W b``. In the pre-norm
Transformer (spec, "Folding an offline layer"):

- each layer's ``self_attn_layer_norm``  -> its ``self_attn`` q, k, v projections;
- each layer's ``final_layer_norm``      -> its ``fc1``;
- each decoder layer's ``encoder_attn_layer_norm`` -> its ``encoder_attn.q_proj``;
- ``encoder.layer_norm`` -> every decoder layer's ``encoder_attn`` k and v projections;
- ``decoder.layer_norm`` -> the output projection, untied from the embeddings, with a bias.

Folded norms become :class:`~un_fairseq.modules.NoNorm`. A norm whose class has
``split_affine()`` (DyT, Derf: ``weight * f(x) + bias``, ``f`` elementwise) folds its
``weight`` and ``bias`` (``a``, ``b``) the same way and keeps ``f`` (its twin without them).
The arithmetic runs in float64 and is cast back to each weight's dtype.

    from un_fairseq import fold
    result = fold.load_folded("checkpoint_best.pt", data="data-bin/...")  # checked, see FoldResult
    result.model, result.reference  # folded, and as the checkpoint stored it

``un-fuse`` and ``un-export`` both run :func:`load_folded`, with the same verification
flags (:func:`add_verification_args`), defaults and errors.
"""

import argparse
import copy
import itertools
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .checkpoint_io import load_checkpoint
from .models.transformer_un import LAYER_NORM_NAMES
from .modules import NoNorm, norm_type_of, registry

#: the norm types whose inference map is a per-channel affine map
OFFLINE = registry.offline_norm_types()
#: the norm types whose inference map is an elementwise ``f`` then a per-channel affine map:
#: their class splits them (``split_affine() -> (f alone, (a, b))``); the fold keeps ``f``
ELEMENTWISE = tuple(n for n, s in registry.norm_specs().items() if hasattr(s.cls, "split_affine"))
#: the norm types ``un-fuse`` and ``un-export`` fold (wholly or their affine map)
FOLDABLE_TYPES = OFFLINE + ELEMENTWISE
#: the norm type of a folded norm (the identity)
IDENTITY = registry.name_of(NoNorm)
FOLDABLE = ", ".join(FOLDABLE_TYPES) + f" (and {IDENTITY!r}: nothing to fold)"


# -- what a model holds --------------------------------------------------------------------

def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` sits in a norm position (any norm type, NoNorm included)."""
    classes = tuple(c for s in registry.norm_specs().values() for c in (s.cls, *s.stands_for))
    return isinstance(module, classes)


def norm_kinds(model: nn.Module) -> Dict[str, int]:
    """``{norm type: count}`` over every norm position of ``model``."""
    return dict(Counter(norm_type_of(m) for m in model.modules() if is_norm(m)))


#: the stacks' final norms: an online norm there is kept as it is (``--final-norm-type``)
FINAL_NORMS = ("encoder.layer_norm", "decoder.layer_norm")


def is_online(norm: nn.Module) -> bool:
    """A norm whose inference output depends on each token: not foldable."""
    return norm_type_of(norm) not in (*FOLDABLE_TYPES, IDENTITY)


def is_foldable(model: nn.Module) -> bool:
    """Every norm foldable or the identity (an online final norm is kept), at least one
    foldable (something to fold), and the model not folded already."""
    names = dict(model.named_modules())
    kinds = {norm_type_of(m) for name, m in names.items() if is_norm(m) and not (name in FINAL_NORMS and is_online(m))}
    return kinds <= {*FOLDABLE_TYPES, IDENTITY} and bool(kinds - {IDENTITY}) and not already_folded(model)


def already_folded(model: nn.Module) -> bool:
    """Whether ``model`` was rebuilt from a checkpoint that ``un-fuse`` wrote: its output
    projection is the untied one (``--fused-output-projection``) or an elementwise norm kept
    its op alone (``--norm-affine-folded``)."""
    decoder = getattr(model, "decoder", None)
    if getattr(getattr(decoder, "cfg", None), "fused_output_projection", False):
        return True
    return any(is_norm(m) and getattr(m, "elementwise_affine", True) is False for m in model.modules())


def affine_of(norm: nn.Module, path: str) -> Optional[Tuple[Tensor, Tensor]]:
    """``(a, b)`` (each ``C``) of an offline norm, None for a NoNorm; ValueError (naming
    ``path``) for an online norm."""
    kind = norm_type_of(norm)
    if kind == IDENTITY:
        return None
    if kind not in OFFLINE:
        raise ValueError(f"cannot fold {path} ({kind}): foldable norm types are {FOLDABLE}")
    return norm.inference_scale()


def split_norm(norm: nn.Module, path: str) -> Tuple[nn.Module, Optional[Tuple[Tensor, Tensor]]]:
    """``(what stays where the norm was, (a, b) of the affine map after it)``: a NoNorm and
    :func:`affine_of` for an offline norm or a NoNorm, ``f`` and ``(weight, bias)`` for an
    elementwise one (None once folded); ValueError (naming ``path``) for an online norm."""
    if norm_type_of(norm) in ELEMENTWISE:
        return norm.split_affine()
    return NoNorm(getattr(norm, "num_features", 0)), affine_of(norm, path)


def unsupported_features(model: nn.Module) -> List[str]:
    """What of fairseq's Transformer neither the fold nor the exported graphs compute
    (empty when all is fine)."""
    enc, dec = model.encoder, model.decoder
    found = [
        ("layernorm_embedding", enc.layernorm_embedding is not None or dec.layernorm_embedding is not None),
        ("adaptive softmax", dec.adaptive_softmax is not None),
        ("decoder input/output projections (embedding dim != model dim)",
         dec.project_in_dim is not None or dec.project_out_dim is not None),
        ("cross-self-attention", dec.cross_self_attention),
        ("quant-noise", enc.quant_noise is not None or dec.quant_noise is not None),
        ("no cross-attention", any(getattr(layer, "encoder_attn", None) is None for layer in dec.layers)),
        ("NormFormer scalings (scale_attn, scale_fc, scale_heads, scale_resids)",
         any(getattr(layer, name, None) is not None for layer in dec.layers
             for name in ("attn_ln", "ffn_layernorm", "c_attn", "w_resid"))),
        ("attention bias_k / zero attention",
         any(m.bias_k is not None or m.add_zero_attn for m in model.modules() if hasattr(m, "bias_k"))),
    ]
    return [name for name, present in found if present]


def check_supported(model: nn.Module) -> None:
    """ValueError unless ``model`` is a ``transformer_un`` without :func:`unsupported_features`."""
    from .models.transformer_un import TransformerUNModel

    if not isinstance(model, TransformerUNModel):
        arch = getattr(getattr(model, "args", None), "arch", None) or type(model).__name__
        raise ValueError(f"not a transformer_un model: its arch is {arch!r}; un-fuse and un-export take "
                         f"transformer_un models only")
    problems = unsupported_features(model)
    if problems:
        raise ValueError("un-fuse and un-export do not support " + ", ".join(problems))


def check_foldable(model: nn.Module) -> None:
    """Raise ValueError unless ``model`` is a supported ``transformer_un`` whose norms are all
    foldable or the identity, except for online final norms (kept as they are), naming every
    offending layer and its norm type."""
    check_supported(model)
    online = [f"{name} ({norm_type_of(m)})" for name, m in model.named_modules()
              if is_norm(m) and is_online(m) and name not in FINAL_NORMS]
    if online:
        raise ValueError(
            "cannot fuse: online norm(s) whose inference output depends on each token: "
            + ", ".join(online) + f". Foldable norm types: {FOLDABLE}; an online norm is kept only as a "
            "stack's final norm (--final-norm-type)"
        )


# -- the arithmetic ---------------------------------------------------------------------

def fold_affine(linear: nn.Linear, a: Tensor, b: Tensor) -> None:
    """Make ``linear(x)`` equal ``linear(a * x + b)``: ``W' = W * a``, ``c' = c + W b``.

    Shapes: ``linear.weight`` is ``out x in``; ``a``, ``b`` are ``in``. A linear without a
    bias gets one. Computed in float64, stored in the weight's dtype.
    """
    w = linear.weight.detach().double()
    a, b = a.detach().double().to(w.device), b.detach().double().to(w.device)
    c = w @ b
    if linear.bias is not None:
        c = c + linear.bias.detach().double()
    with torch.no_grad():
        linear.weight = nn.Parameter((w * a).to(linear.weight.dtype))
        linear.bias = nn.Parameter(c.to(linear.weight.dtype))


class ChannelScale(nn.Module):
    """``y = scale * x`` per channel (``... x C``): the scale ``a`` of a folded norm kept
    out of the weights (``fold_model(keep_scale=True)``), so that an int8 matmul quantises
    ``a * x``, whose channels are on one scale, as it would the norm's output."""

    def __init__(self, scale: Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def fold_model(model: nn.Module, keep_scale: bool = False) -> nn.Module:
    """Fold every foldable norm of ``model`` (a ``transformer_un``) IN PLACE; return it.

    The result computes what ``model.eval()`` computed before (up to float rounding), with
    every offline norm a NoNorm, every elementwise one its ``f`` alone, and the decoder's
    output projection untied from the embeddings and given a bias (unless the decoder's final
    norm is online: an online final norm stays as it is). Raises ValueError (before changing
    anything) if a norm inside a layer is online. ``keep_scale``: fold only the shift ``b``
    (``c' = c + W b``) and put the scale ``a`` in a :class:`ChannelScale` where the norm was
    (after ``f``; one per-channel multiply, no statistics).
    """
    check_foldable(model)
    enc, dec = model.encoder, model.decoder
    for side, stack in (("encoder", enc), ("decoder", dec)):
        for i, layer in enumerate(stack.layers):
            targets = {
                "self_attn_layer_norm": [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj],
                "final_layer_norm": [layer.fc1],
                "encoder_attn_layer_norm": [layer.encoder_attn.q_proj] if getattr(layer, "encoder_attn", None) else [],
            }
            for name in LAYER_NORM_NAMES:
                if getattr(layer, name, None) is not None:
                    _fold_norm(layer, name, f"{side}.layers.{i}.{name}", targets[name], keep_scale)

    if enc.layer_norm is not None and not is_online(enc.layer_norm):
        cross = [lin for layer in dec.layers for lin in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)]
        _fold_norm(enc, "layer_norm", "encoder.layer_norm", cross, keep_scale)
    if dec.layer_norm is not None and not is_online(dec.layer_norm):
        old = dec.output_projection
        untied = nn.Linear(old.in_features, old.out_features, bias=True)
        untied = untied.to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            untied.weight.copy_(old.weight)
            untied.bias.zero_()
        dec.output_projection = untied
        _fold_norm(dec, "layer_norm", "decoder.layer_norm", [untied], keep_scale)
    return model


def _fold_norm(owner: nn.Module, name: str, path: str, linears: List[nn.Linear], keep_scale: bool = False) -> None:
    kept, affine = split_norm(getattr(owner, name), path)
    if affine is not None and keep_scale:
        a, b = affine
        for linear in linears:
            fold_affine(linear, torch.ones_like(a), b)  # W (a x + b) + c = W (a x) + (c + W b)
        setattr(owner, name, ChannelScale(a) if isinstance(kept, NoNorm) else nn.Sequential(kept, ChannelScale(a)))
        return
    if affine is not None:
        for linear in linears:
            fold_affine(linear, *affine)
    setattr(owner, name, kept)


def encoder_output_affine(model: nn.Module) -> Optional[Tuple[Tensor, Tensor]]:
    """The final encoder norm's ``(a, b)`` (None when it is absent or the identity): a folded
    encoder returns its output before that norm's affine map, which now lives in the
    cross-attention (an elementwise norm's ``f`` is applied)."""
    norm = model.encoder.layer_norm
    if norm is None or norm_type_of(norm) == IDENTITY or is_online(norm):
        return None
    return split_norm(norm, "encoder.layer_norm")[1]


# -- the checkpoint ---------------------------------------------------------------------

def build_from_state(state: Dict, data: Optional[str] = None):
    """``(task, model)`` built by fairseq from a checkpoint's stored cfg, weights loaded,
    in eval mode. ``data`` replaces the stored data folder (the task reads its
    dictionaries there). ValueError for anything that is not a supported ``transformer_un``
    (:func:`check_supported`)."""
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf, overwrite_args_by_name
    from fairseq.models import ARCH_MODEL_REGISTRY
    from omegaconf import OmegaConf

    if state.get("cfg") is not None:
        cfg = OmegaConf.create(copy.deepcopy(state["cfg"]), flags={"allow_objects": True})
    elif state.get("args") is not None:
        cfg = convert_namespace_to_omegaconf(copy.deepcopy(state["args"]))
    else:
        raise ValueError("the checkpoint stores neither 'cfg' nor 'args': cannot rebuild its model")
    arch = getattr(cfg.model, "arch", None) or getattr(cfg.model, "_name", None)
    if arch not in ARCH_MODEL_REGISTRY:
        raise ValueError(f"the checkpoint's arch {arch!r} is not a fairseq model known here: "
                         f"un-fuse and un-export take transformer_un models only")
    if data is not None:
        overwrite_args_by_name(cfg, {"data": str(data)})
    if not Path(str(cfg.task.data).split(":")[0]).is_dir():
        raise ValueError(f"the checkpoint's data folder {cfg.task.data} does not exist: give --data DIR "
                         f"(a fairseq-preprocess output folder with the dictionaries)")
    try:
        task = tasks.setup_task(cfg.task)
    except Exception as err:  # fairseq raises bare Exceptions here (e.g. no language pair found)
        raise ValueError(f"fairseq cannot set up the checkpoint's task with data folder {cfg.task.data}: "
                         f"{str(err).strip() or type(err).__name__} (give --data DIR, a fairseq-preprocess "
                         f"output folder)") from None
    model = task.build_model(cfg.model)
    try:
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"the checkpoint's weights do not fit its model: {first}") from None
    check_supported(model)
    return task, model.eval()


def _model_cfg_set(model_cfg, **values) -> None:
    for key, value in values.items():
        if isinstance(model_cfg, dict):
            model_cfg[key] = value
        else:
            setattr(model_cfg, key, value)


def folded_state(state: Dict, model: nn.Module, output_projection: bool = True) -> Dict:
    """A copy of ``state`` holding the folded ``model`` and the cfg/args that rebuild it:
    every norm type the identity, or on a side whose norms are elementwise that type with the
    flags of the norms kept (their affine map folded), ``--final-norm-type`` for final norms
    that differ from their layers' (kept online ones included), and ``fused_output_projection``
    (``output_projection``: False for a model whose final norms were dropped rather than
    folded). The optimizer state is dropped (it refers to the unfolded parameters)."""
    new = dict(state)
    new["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dec_final = getattr(model.decoder, "layer_norm", None)
    fused = dict(norm_type=IDENTITY, encoder_norm_type=None, decoder_norm_type=None, final_norm_type=None,
                 fused_output_projection=output_projection and not (dec_final is not None and is_online(dec_final)))
    kinds = {side: _kept_kinds(model, side) for side in ("encoder", "decoder")}  # (layers', final's)
    finals = {final for layers, final in kinds.values() if final != layers}
    if len(finals) > 1:
        raise ValueError(f"the final norms of a folded model are {', '.join(sorted(finals))}: not folded")
    if finals:
        fused["final_norm_type"] = finals.pop()
    for side, (layers, final) in kinds.items():
        if fused["final_norm_type"] not in (None, final):
            raise ValueError(f"the {side}'s final norm of a folded model is {final}: not folded")
        if layers != IDENTITY:
            fused[f"{side}_norm_type"] = layers
    for m in model.modules():
        if is_norm(m) and norm_type_of(m) != IDENTITY:
            fused.update(_flags_of(m))
    if state.get("cfg") is not None:
        new["cfg"] = copy.deepcopy(state["cfg"])
        _model_cfg_set(new["cfg"]["model"], **fused)
    if state.get("args") is not None:
        new["args"] = copy.deepcopy(state["args"])
        _model_cfg_set(new["args"], **fused)
    new["last_optimizer_state"] = None
    return new


def _kept_kinds(model: nn.Module, side: str):
    """``(layers, final)``: the norm type left in the layers of ``model``'s ``side`` and in its
    final norm after folding (the identity where folded); ValueError for anything but one
    elementwise type in the layers, or anything but an elementwise or online final norm."""
    stack = getattr(model, side)
    layers = sorted({norm_type_of(m) for m in stack.layers.modules() if is_norm(m)} - {IDENTITY})
    final = getattr(stack, "layer_norm", None)
    final = norm_type_of(final) if final is not None and is_norm(final) else IDENTITY
    if len(layers) > 1 or not set(layers) <= set(ELEMENTWISE) or not (final in (IDENTITY, *ELEMENTWISE)
                                                                        or is_online(stack.layer_norm)):
        raise ValueError(f"the {side} of a folded model holds {', '.join(sorted({*layers, final}))}: not folded")
    return (layers[0] if layers else IDENTITY), final


def _flags_of(norm: nn.Module) -> Dict:
    """The flag values (argparse dests) that rebuild ``norm`` with the options it holds."""
    flags = {}
    for opt in registry.spec_of(norm_type_of(norm)).options:
        if opt.flag is not None:
            value = getattr(norm, opt.name)
            flags[opt.dest] = (not value) if opt.negated else value
    return flags


# -- verification ---------------------------------------------------------------------

#: what the fold is checked on when nothing else is asked for (un-fuse and un-export alike); the
#: split is :func:`un_fairseq.task_setup.find_split`'s: the first binarized one in --data
VERIFY_BATCHES, VERIFY_TOLERANCE, VERIFY_SEED = 8, 1e-4, 1


def add_verification_args(parser) -> None:
    """The verification flags of ``un-fuse`` and ``un-export`` (argparse)."""
    from .task_setup import SPLITS

    parser.add_argument("--gen-subset", default=None, metavar="SPLIT",
                        help="binarized split of --data whose batches the fold is checked on (default: the "
                             f"first of {', '.join(SPLITS)} there, else random tokens over the dictionaries)")
    parser.add_argument("--verify-batches", type=int, default=VERIFY_BATCHES, metavar="N",
                        help=f"batches of the fold check (default: {VERIFY_BATCHES})")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="run the unfolded and folded models in eval mode and fail (writing "
                             "nothing) if encoder outputs or decoder log-probabilities differ by "
                             "more than --tolerance (default: on; --no-verify reports the differences "
                             "without failing)")
    parser.add_argument("--tolerance", type=float, default=VERIFY_TOLERANCE, metavar="TOL",
                        help="allowed |unfolded - folded| per value, relative and absolute: "
                             f"TOL * (1 + |unfolded|) (default: {VERIFY_TOLERANCE:g}, for float32)")
    parser.add_argument("--seed", type=int, default=VERIFY_SEED, help="seed of the random verification tokens")


def verification(args, split: Optional[str]) -> Dict:
    """:func:`load_folded`'s keyword arguments from the flags of :func:`add_verification_args`
    and the ``split`` found in the data folder (None: random tokens)."""
    return dict(subset=split, count=args.verify_batches, seed=args.seed,
                tolerance=args.tolerance if args.verify else float("inf"))


def verification_batches(task, model, subset: Optional[str], count: int, seed: int) -> Tuple[Iterable[Dict], str]:
    """Up to ``count`` real batches of ``subset`` when the task's data has it, else random-token
    batches (``8 x 12`` sources, ``8 x 10`` targets); and which of the two, in words."""
    if subset is not None:
        try:
            task.load_dataset(subset)
        except FileNotFoundError:
            pass
        else:
            itr = task.get_batch_iterator(dataset=task.dataset(subset), max_tokens=4000,
                                          max_positions=model.max_positions(), seed=seed)
            return itertools.islice(itr.next_epoch_itr(shuffle=False), count), f"{count} batches of {subset}"
    return _random_batches(task, count, seed), f"{count} random-token batches"


def _random_batches(task, count: int, seed: int) -> Iterator[Dict]:
    gen = torch.Generator().manual_seed(seed)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    for _ in range(count):
        src = torch.randint(src_dict.nspecial, len(src_dict), (8, 12), generator=gen)
        prev = torch.randint(tgt_dict.nspecial, len(tgt_dict), (8, 10), generator=gen)
        src[:, -1], prev[:, 0] = src_dict.eos(), tgt_dict.eos()
        yield {"net_input": {"src_tokens": src, "src_lengths": torch.full((8,), 12),
                             "prev_output_tokens": prev}}


@torch.no_grad()
def compare(task, plain: nn.Module, folded: nn.Module, enc_affine, batches: Iterable[Dict],
            tolerance: float) -> Tuple[float, float, int]:
    """Largest ``|plain - folded|`` of encoder outputs and decoder log-probabilities at real
    tokens, and the number of values that exceed ``tolerance * (1 + |plain|)``.

    The folded encoder returns its output before the (folded) final norm: it is compared
    after that norm's affine map ``enc_affine`` (:func:`encoder_output_affine`).
    """
    plain.eval(), folded.eval()
    worst_enc = worst_dec = 0.0
    bad = 0
    for batch in batches:
        net = batch["net_input"]
        outs = []
        for model in (plain, folded):
            enc = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
            dec, _ = model.decoder(net["prev_output_tokens"], encoder_out=enc)
            outs.append((enc["encoder_out"][0].double(), model.get_normalized_probs((dec, None), log_probs=True).double()))
        (e0, d0), (e1, d1) = outs
        if enc_affine is not None:
            e1 = e1 * enc_affine[0].double() + enc_affine[1].double()
        src_real = net["src_tokens"].ne(task.source_dictionary.pad()).t()  # T x B
        tgt_real = net["prev_output_tokens"].ne(task.target_dictionary.pad())  # B x T
        for ref, got, keep in ((e0, e1, src_real), (d0, d1, tgt_real)):
            diff = (ref - got).abs()[keep]
            bad += int((diff > tolerance * (1 + ref.abs()[keep])).sum())
        worst_enc = max(worst_enc, float((e0 - e1).abs()[src_real].max()))
        worst_dec = max(worst_dec, float((d0 - d1).abs()[tgt_real].max()))
    return worst_enc, worst_dec, bad


@dataclass
class FoldResult:
    """What :func:`load_folded` returns.

    ``model``: folded when ``folded`` (else the model as stored, for online norms);
    ``reference``: the model as the checkpoint stored it (the reference of every check);
    ``norm_types``: ``{norm type: count}`` before folding; ``check``: the largest
    differences of the fold check (``encoder_out``, ``decoder_log_probs``) when folded;
    ``verified_on``: what the check ran on, in words.
    """

    task: object
    model: nn.Module
    reference: nn.Module
    folded: bool
    norm_types: Dict[str, int]
    check: Dict[str, float] = field(default_factory=dict)
    verified_on: str = ""


def fold_checked(task, model: nn.Module, tolerance: float = VERIFY_TOLERANCE, subset: Optional[str] = None,
                 count: int = VERIFY_BATCHES, seed: int = VERIFY_SEED, keep_scale: bool = False,
                 require_fold: bool = False) -> FoldResult:
    """Fold ``model`` (kept as the reference; a copy is folded) when :func:`is_foldable`,
    compare on :func:`verification_batches` and raise ValueError when a value changes by
    more than ``tolerance * (1 + |value|)``. A model with an online norm is returned
    unfolded (``folded`` False), unless ``require_fold``: then it is an error naming the
    online norms (:func:`check_foldable`; ``un-fuse``), and a model whose norms are all the
    identity is "folded" too (its output projection untied). ``keep_scale``: see
    :func:`fold_model`."""
    kinds = norm_kinds(model)
    if require_fold:
        check_foldable(model)
        kept_final = [m for name, m in model.named_modules() if name in FINAL_NORMS and is_norm(m) and is_online(m)]
        others = {norm_type_of(m) for m in model.modules() if is_norm(m) and not any(m is k for k in kept_final)}
        if already_folded(model) or (kept_final and others <= {IDENTITY}):
            raise ValueError("this checkpoint has nothing left to fold (norms: "
                             + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                             + "; un-fuse wrote it, or only online final norms remain); nothing written")
    elif not is_foldable(model):
        return FoldResult(task, model.eval(), model.eval(), False, kinds)
    reference = model.eval()
    folded = fold_model(copy.deepcopy(model), keep_scale)
    batches, where = verification_batches(task, folded, subset, count, seed)
    enc_affine = encoder_output_affine(reference)
    if keep_scale and enc_affine is not None:  # the folded encoder's output is a * x
        enc_affine = (torch.ones_like(enc_affine[0]), enc_affine[1])
    worst_enc, worst_dec, bad = compare(task, reference, folded, enc_affine, batches, tolerance)
    check = {"encoder_out": worst_enc, "decoder_log_probs": worst_dec}
    if bad:
        raise ValueError(f"folding changed {bad} values by more than the tolerance {tolerance:g} "
                         f"(largest: encoder {worst_enc:.3g}, decoder {worst_dec:.3g}; on {where}); nothing written")
    return FoldResult(task, folded.eval(), reference, True, kinds, check, where)


#: what a command of the fold pipeline reports as a failure (after which it wrote nothing)
FAILURES = (KeyboardInterrupt, ValueError, FileNotFoundError)


def failed(prog: str, err: BaseException) -> int:
    """The one-line message on stderr and the exit status of ``un-fuse`` / ``un-export``
    after ``err`` (one of :data:`FAILURES`): 130 for Ctrl-C, else 2."""
    if isinstance(err, KeyboardInterrupt):
        print(f"{prog}: interrupted; nothing written", file=sys.stderr)
        return 130
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def load_folded(path_or_state, data: Optional[str] = None, tolerance: float = VERIFY_TOLERANCE,
                subset: Optional[str] = None, count: int = VERIFY_BATCHES, seed: int = VERIFY_SEED,
                keep_scale: bool = False, require_fold: bool = False) -> FoldResult:
    """A checkpoint (a path or its loaded state) -> :class:`FoldResult`: rebuilt by fairseq,
    checked for unsupported features, folded when every norm is offline and checked against
    the unfolded model (:func:`fold_checked`). ``require_fold``: an online norm is an error
    naming it (``un-fuse``) rather than a model exported as it is (``un-export``)."""
    state = path_or_state if isinstance(path_or_state, dict) else load_checkpoint(path_or_state)
    task, model = build_from_state(state, data)
    return fold_checked(task, model, tolerance, subset, count, seed, keep_scale, require_fold)

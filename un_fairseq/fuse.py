"""Fold every offline normalizer of a ``transformer_un`` model into the linear layers that
read its output, so that no normalisation op is left at inference.

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

Folded norms become :class:`~un_fairseq.modules.NoNorm`. The arithmetic runs in float64
and is cast back to each weight's dtype.

    un-fuse checkpoint_best.pt checkpoint_fused.pt --data data-bin/iwslt14.tokenized.de-en
"""

import argparse
import copy
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .checkpoint_io import load_checkpoint, save_atomically
from .modules import OFFLINE_NORM_TYPES, NoNorm, norm_type_of
from .modules.base import PaddingAwareNorm
from .modules.online_norms import RMSNorm

FOLDABLE = ", ".join(OFFLINE_NORM_TYPES) + " (and 'none': nothing to fold)"
LAYER_NORMS = ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm")


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


def _affine(norm: nn.Module, path: str) -> Optional[Tuple[Tensor, Tensor]]:
    """``(a, b)`` of an offline norm, None for a NoNorm; ValueError for anything else."""
    kind = norm_type_of(norm)
    if kind == "none":
        return None
    if kind not in OFFLINE_NORM_TYPES:
        raise ValueError(f"cannot fold {path} ({kind}): foldable norm types are {FOLDABLE}")
    return norm.inference_scale()


# -- the model --------------------------------------------------------------------------

def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (PaddingAwareNorm, nn.LayerNorm, RMSNorm, NoNorm))


def check_foldable(model: nn.Module) -> None:
    """Raise ValueError unless ``model`` is a ``transformer_un`` whose norms are all offline
    or 'none', naming every offending layer and its norm type."""
    from .models.transformer_un import TransformerUNModel

    if not isinstance(model, TransformerUNModel):
        raise ValueError(f"un-fuse folds transformer_un models only, not {type(model).__name__}")
    online = [f"{name} ({norm_type_of(m)})" for name, m in model.named_modules()
              if _is_norm(m) and norm_type_of(m) not in OFFLINE_NORM_TYPES + ("none",)]
    if online:
        raise ValueError(
            "cannot fuse: online norm(s) whose inference output depends on each token: "
            + ", ".join(online) + f". Foldable norm types: {FOLDABLE}"
        )
    decoder = model.decoder
    unsupported = [name for name, bad in (
        ("adaptive softmax", decoder.adaptive_softmax is not None),
        ("a decoder output dimension other than its embedding dimension", decoder.project_out_dim is not None),
        ("cross-self-attention", decoder.cross_self_attention),
    ) if bad]
    if unsupported:
        raise ValueError(f"un-fuse does not support {', '.join(unsupported)}")


def fuse_model(model: nn.Module) -> nn.Module:
    """Fold every offline norm of ``model`` (a ``transformer_un``) IN PLACE; return it.

    The result computes what ``model.eval()`` computed before (up to float rounding), with
    every norm a NoNorm and the decoder's output projection untied from the embeddings and
    given a bias. Raises ValueError (before changing anything) if a norm is online.
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
            for name in LAYER_NORMS:
                norm = getattr(layer, name, None)
                if norm is not None:
                    _fold_norm(layer, name, f"{side}.layers.{i}.{name}", targets[name])

    if enc.layer_norm is not None:
        cross = [lin for layer in dec.layers if getattr(layer, "encoder_attn", None)
                 for lin in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)]
        _fold_norm(enc, "layer_norm", "encoder.layer_norm", cross)
    if dec.layer_norm is not None:
        old = dec.output_projection
        untied = nn.Linear(old.in_features, old.out_features, bias=True)
        untied = untied.to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            untied.weight.copy_(old.weight)
            untied.bias.zero_()
        dec.output_projection = untied
        _fold_norm(dec, "layer_norm", "decoder.layer_norm", [untied])
    return model


def _fold_norm(owner: nn.Module, name: str, path: str, linears: List[nn.Linear]) -> None:
    norm = getattr(owner, name)
    affine = _affine(norm, path)
    if affine is not None:
        for linear in linears:
            fold_affine(linear, *affine)
    setattr(owner, name, NoNorm(getattr(norm, "num_features", 0)))


# -- the checkpoint ---------------------------------------------------------------------

def _model_cfg_set(model_cfg, **values) -> None:
    for key, value in values.items():
        if isinstance(model_cfg, dict):
            model_cfg[key] = value
        else:
            setattr(model_cfg, key, value)


def build_from_state(state: Dict, data: Optional[str] = None):
    """``(task, model)`` built by fairseq from a checkpoint's stored cfg, weights loaded.

    ``data`` replaces the stored data folder (the task reads its dictionaries there).
    """
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf, overwrite_args_by_name
    from fairseq.models import ARCH_MODEL_REGISTRY
    from omegaconf import OmegaConf

    from .models.transformer_un import TransformerUNModel

    if state.get("cfg") is not None:
        cfg = OmegaConf.create(copy.deepcopy(state["cfg"]), flags={"allow_objects": True})
    elif state.get("args") is not None:
        cfg = convert_namespace_to_omegaconf(copy.deepcopy(state["args"]))
    else:
        raise ValueError("the checkpoint stores neither 'cfg' nor 'args': cannot rebuild its model")
    arch = getattr(cfg.model, "arch", None) or getattr(cfg.model, "_name", None)
    if ARCH_MODEL_REGISTRY.get(arch) is not TransformerUNModel:
        raise ValueError(f"not a transformer_un checkpoint: its arch is {arch!r}; un-fuse and un-export "
                         f"take transformer_un models only")
    if data is not None:
        overwrite_args_by_name(cfg, {"data": str(data)})
    if not Path(str(cfg.task.data).split(":")[0]).is_dir():
        raise ValueError(f"the checkpoint's data folder {cfg.task.data} does not exist: give --data DIR "
                         f"(a fairseq-preprocess output folder with the dictionaries)")
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    return task, model.eval()


def fused_state(state: Dict, model: nn.Module) -> Dict:
    """A copy of ``state`` holding the fused ``model`` and the cfg/args that rebuild it:
    every norm type 'none' and ``fused_output_projection``. The optimizer state is dropped
    (it refers to the unfused parameters)."""
    new = dict(state)
    new["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fused = dict(norm_type="none", encoder_norm_type=None, decoder_norm_type=None,
                 fused_output_projection=True)
    if state.get("cfg") is not None:
        new["cfg"] = copy.deepcopy(state["cfg"])
        _model_cfg_set(new["cfg"]["model"], **fused)
    if state.get("args") is not None:
        new["args"] = copy.deepcopy(state["args"])
        _model_cfg_set(new["args"], **fused)
    new["last_optimizer_state"] = None
    return new


def fuse_state(state: Dict, data: Optional[str] = None) -> Dict:
    """A checkpoint's state -> the fused checkpoint's state (the input is not changed)."""
    _, model = build_from_state(state, data)
    return fused_state(state, fuse_model(model))


# -- verification -----------------------------------------------------------------------

def _batches(task, model, subset: Optional[str], count: int, seed: int) -> Iterable[Dict]:
    """Up to ``count`` real batches of ``subset``, or random-token batches when None."""
    if subset is None:
        gen = torch.Generator().manual_seed(seed)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        for _ in range(count):
            src = torch.randint(src_dict.nspecial, len(src_dict), (8, 12), generator=gen)
            prev = torch.randint(tgt_dict.nspecial, len(tgt_dict), (8, 10), generator=gen)
            src[:, -1], prev[:, 0] = src_dict.eos(), tgt_dict.eos()
            yield {"net_input": {"src_tokens": src, "src_lengths": torch.full((8,), 12),
                                 "prev_output_tokens": prev}}
        return
    task.load_dataset(subset)
    itr = task.get_batch_iterator(dataset=task.dataset(subset), max_tokens=4000,
                                  max_positions=model.max_positions(), seed=seed)
    for i, batch in enumerate(itr.next_epoch_itr(shuffle=False)):
        if i >= count:
            break
        yield batch


@torch.no_grad()
def compare(task, plain: nn.Module, fused: nn.Module, enc_affine, batches: Iterable[Dict],
            tolerance: float) -> Tuple[float, float, int]:
    """Largest ``|plain - fused|`` of encoder outputs and decoder log-probabilities at real
    tokens, and the number of values that exceed ``tolerance * (1 + |plain|)``.

    The fused encoder returns its output before the (folded) final norm: it is compared
    after that norm's affine map ``enc_affine`` (None when there was no final norm).
    """
    plain.eval(), fused.eval()
    worst_enc = worst_dec = 0.0
    bad = 0
    for batch in batches:
        net = batch["net_input"]
        outs = []
        for model in (plain, fused):
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


# -- the command ------------------------------------------------------------------------

def _summary(plain_sd: Dict[str, Tensor], fused_sd: Dict[str, Tensor]) -> Tuple[int, int, int]:
    """Tensors changed, added and removed between two state dicts."""
    changed = sum(1 for k in fused_sd if k in plain_sd and not torch.equal(fused_sd[k], plain_sd[k]))
    return changed, len(set(fused_sd) - set(plain_sd)), len(set(plain_sd) - set(fused_sd))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="un-fuse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a transformer_un checkpoint (every norm offline or 'none')")
    parser.add_argument("output", help="the fused checkpoint to write (atomically; never the input)")
    parser.add_argument("--data", metavar="DIR",
                        help="fairseq binarized data folder (dictionaries; verification batches). "
                             "Default: the folder stored in the checkpoint, whose dictionaries are "
                             "then used with random tokens for --verify")
    parser.add_argument("--gen-subset", default="valid", metavar="SPLIT",
                        help="split of --data used by --verify (default: valid)")
    parser.add_argument("--verify-batches", type=int, default=8, metavar="N",
                        help="batches compared by --verify (default: 8)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="run the unfused and fused models in eval mode and fail (writing "
                             "nothing) if encoder outputs or decoder log-probabilities differ by "
                             "more than --tolerance (default: on; --no-verify skips it)")
    parser.add_argument("--tolerance", type=float, default=1e-4, metavar="TOL",
                        help="allowed |unfused - fused| per value, relative and absolute: "
                             "TOL * (1 + |unfused|) (default: 1e-4, for float32)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random verification tokens")
    args = parser.parse_args(argv)

    src, dst = Path(args.input), Path(args.output)
    try:
        if dst.resolve() == src.resolve() or (dst.exists() and src.exists() and dst.samefile(src)):
            raise ValueError(f"output {dst} is the input: refusing to overwrite it")
        state = load_checkpoint(src)
        task, model = build_from_state(state, args.data)
        check_foldable(model)
        plain_sd = {k: v.clone() for k, v in model.state_dict().items()}
        plain = copy.deepcopy(model) if args.verify else None
        enc_norm = model.encoder.layer_norm
        enc_affine = _affine(enc_norm, "encoder.layer_norm") if enc_norm is not None and norm_type_of(enc_norm) != "none" else None
        kinds = Counter(norm_type_of(m) for m in model.modules() if _is_norm(m))
        fuse_model(model)
        if args.verify:
            subset = args.gen_subset if args.data else None
            worst_enc, worst_dec, bad = compare(task, plain, model, enc_affine,
                                                _batches(task, model, subset, args.verify_batches, args.seed),
                                                args.tolerance)
            where = f"{args.gen_subset} of {args.data}" if subset else "random tokens"
            print(f"verify ({where}): largest difference: encoder output {worst_enc:.3g}, decoder "
                  f"log-probabilities {worst_dec:.3g}; tolerance {args.tolerance:g} * (1 + |value|)")
            if bad:
                raise ValueError(f"verification failed: {bad} values differ by more than the tolerance; "
                                 f"nothing written")
        new_state = fused_state(state, model)
        size = save_atomically(new_state, dst)
    except KeyboardInterrupt:
        print("un-fuse: interrupted; nothing written", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"un-fuse: error: {err}", file=sys.stderr)
        return 2
    changed, added, removed = _summary(plain_sd, new_state["model"])
    folded = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()) if k != "none") or "none"
    print(f"folded norms: {folded}; already 'none': {kinds.get('none', 0)}")
    print(f"parameters: {changed} tensors changed, {added} added (biases, untied output projection), "
          f"{removed} removed (norm parameters and statistics)")
    print(f"wrote {dst} ({size / 2**20:.1f} MiB; input {src.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

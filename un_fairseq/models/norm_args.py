"""Command-line flags that choose and configure the normalizers of ``transformer_un``,
generated from the norm registry (``un_fairseq/modules/registry.py``: the declarations on
the normalizer classes): one flag per option that declares one, with the option's default,
help and check.

Each flag is validated when it is parsed, so a bad value stops ``fairseq-train`` at start-up
with a message naming the flag, the value and what is allowed.
"""

import argparse
from typing import Any, Callable, Dict

from torch import nn

from ..modules import registry, row_sums
from ..modules.registry import build_norm, flag_options
from ..modules.spec import KINDS, Option

DEFAULT_NORM_TYPE = registry.default_norm_type()

#: Flags of the model that are not a norm's option: dest -> default.
MODEL_FLAG_DEFAULTS = dict(norm_type=DEFAULT_NORM_TYPE, encoder_norm_type=None,
                           decoder_norm_type=None, final_norm_type=None, norm_kernels=row_sums.kernels,
                           fused_output_projection=False)

#: Every norm flag's value when it is not given (filled into older checkpoints' args too).
NORM_DEFAULTS: Dict[str, Any] = {
    **{dest: opt.unset for dest, (opt, _) in flag_options().items()},
    **MODEL_FLAG_DEFAULTS,
}



def _argtype(opt: Option) -> Callable:
    """argparse ``type=`` for ``opt``: parse the text, then the option's check (which
    returns the value as the constructor normalises it, e.g. a window pair)."""
    check, parse, _ = KINDS[opt.kind]

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{opt.flag}={text!r} is not a number")
        try:
            return check(opt.flag, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"got {text!r}: {err}")

    convert.__name__ = opt.flag
    return convert


def _help(opt: Option, norms) -> str:
    specs = registry.norm_specs()
    who = ", ".join(specs[n].label for n in norms)
    if opt.kind == "flag":
        return f"{who}: {opt.help}"
    if opt.fallback is not None:
        return f"{who}: {opt.help} (default: --{opt.fallback.replace('_', '-')}, else {opt.default})"
    return f"{who}: {opt.help} (default: {opt.default})"


def add_norm_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--norm-type`` and every norm option's flag to fairseq's model argument parser.

    fairseq hands ``add_args`` an argument group ("Model-specific configuration"): the flags
    go straight into it (argparse lists no group nested in a group under ``--help``)."""
    g = parser
    if not isinstance(parser, argparse._ArgumentGroup):
        g = parser.add_argument_group("normalization (un_fairseq)")
    specs = registry.norm_specs()
    names = tuple(specs)
    g.add_argument("--norm-type", choices=names, metavar="{" + ",".join(names) + "}",
                   help=f"normalizer in every pre-norm position (default: {DEFAULT_NORM_TYPE}): "
                        + "; ".join(f"{n}: {s.doc}" for n, s in specs.items()))
    for side in ("encoder", "decoder"):
        g.add_argument(f"--{side}-norm-type", choices=names, metavar="NAME",
                       help=f"override --norm-type for the {side} (its layers and final norm)")
    g.add_argument("--final-norm-type", choices=names, metavar="NAME",
                   help="override the norm type of each stack's final norm (the encoder's output; "
                        "the decoder's, before the output projection); the layers keep theirs")
    for opt, norms in flag_options().values():
        if opt.kind == "flag":
            g.add_argument(opt.flag, action="store_true", help=_help(opt, norms))
        else:
            g.add_argument(opt.flag, type=_argtype(opt), metavar=opt.metavar or KINDS[opt.kind][2],
                           help=_help(opt, norms))
    g.add_argument("--norm-kernels", choices=row_sums.KERNEL_CHOICES,
                   help="UN, PN, PN*, MABN: the kernels of their training forward and backward: "
                        "'compiled' (torch.compile: C++/OpenMP on CPU, Triton on CUDA; eager where "
                        "compilation is unavailable), 'eager', or 'auto': compiled on the devices "
                        f"where it was measured faster (now: {_compiled_devices()}) "
                        f"(default: {row_sums.kernels})")
    g.add_argument("--fused-output-projection", action="store_true",
                   help="internal, set by un-fuse in the checkpoints it writes: the decoder's "
                        "output projection is untied from the embeddings and has a bias")


def _compiled_devices() -> str:
    return ", ".join(f"{d} from {n} elements" for d, n in row_sums.COMPILED_BY_DEFAULT.items()
                     if n is not None) or "no device"


def set_norm_defaults(args) -> None:
    """Fill every norm flag the user left unset (fairseq's architecture-function style)."""
    for name, value in NORM_DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def norm_type_for(cfg, side: str) -> str:
    """The norm name for ``side`` ('encoder' or 'decoder'), with its override applied."""
    return getattr(cfg, f"{side}_norm_type", None) or getattr(cfg, "norm_type", None) or DEFAULT_NORM_TYPE


def option_value(cfg, opt: Option, model: Dict[str, Any]) -> Any:
    """The value of ``opt`` from the parsed flags ``cfg`` (and the model's ``model``)."""
    if opt.from_model is not None:
        return model[opt.from_model]
    value = getattr(cfg, opt.dest, None)
    if opt.kind == "flag":
        return not value if opt.negated else bool(value)
    if value is None and opt.fallback is not None:
        value = getattr(cfg, opt.fallback, None) or None
    return opt.default if value is None else value


def norm_options(cfg, name: str, num_heads: int) -> Dict[str, Any]:
    """Constructor options of norm ``name`` from the parsed flags (options without a flag
    keep their constructor default)."""
    model = {"attention_heads": num_heads}
    return {opt.name: option_value(cfg, opt, model) for opt in registry.spec_of(name).options
            if opt.flag is not None or opt.from_model is not None}


def make_norm_factory(cfg, side: str, num_heads: int, final: bool = False) -> Callable[[int], nn.Module]:
    """A ``C -> norm`` builder for one side of the model: its layers' norms, or with ``final``
    its final norm (``--final-norm-type`` when given)."""
    name = (final and getattr(cfg, "final_norm_type", None)) or norm_type_for(cfg, side)
    options = norm_options(cfg, name, num_heads)
    return lambda num_features: build_norm(name, num_features, **options)


def validate_norm_args(args) -> None:
    """Build one norm per side from ``args`` so that bad values fail before the model; select
    the norms' kernels (``--norm-kernels``, for the whole process)."""
    row_sums.select(args.norm_kernels)
    for side, heads in (("encoder", args.encoder_attention_heads), ("decoder", args.decoder_attention_heads)):
        for final in (False, True):
            make_norm_factory(args, side, heads, final)(getattr(args, f"{side}_embed_dim"))


def main() -> int:
    """Print the normalization flags with their help (fairseq's ``--help`` prints before it
    adds any model flag, so this is where they are listed)."""
    parser = argparse.ArgumentParser(
        prog="fairseq-train --user-dir un_fairseq --arch transformer_un",
        description="The normalization flags of the transformer_un architectures (shown by "
                    "python -m un_fairseq.norm_flags); every other flag is fairseq's.")
    add_norm_args(parser)
    parser.print_help()
    return 0

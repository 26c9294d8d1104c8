"""Command-line flags that choose and configure the normalizers of ``transformer_un``.

Each flag is validated when it is parsed, so a bad value stops ``fairseq-train`` at start-up
with a message naming the flag, the value and what is allowed.
"""

import argparse
from typing import Any, Callable, Dict

from torch import nn

from un_tools.norm_names import UN_DEFAULT_MOMENTUM

from ..modules import BATCH_STAT_NORM_TYPES, NORM_TYPES, build_norm
from ..modules.options import check_eps, check_momentum, check_warmup, check_window


def _argtype(check: Callable, flag: str, parse: Callable) -> Callable:
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}={text!r} is not a number")
        try:
            return check(flag, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"got {text!r}: {err}")

    convert.__name__ = flag
    return convert


def _parse_window(text: str):
    parts = [int(p) for p in str(text).split(",")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def _parse_int(text: str) -> int:
    value = float(text)
    if value != int(value):
        raise ValueError("not a whole number")
    return int(value)


def add_norm_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``--norm-type`` family of flags to fairseq's model argument parser."""
    g = parser.add_argument_group("normalization (un_fairseq)")
    g.add_argument("--norm-type", choices=NORM_TYPES, metavar="{" + ",".join(NORM_TYPES) + "}",
                   help="normalizer in every pre-norm position (default: un). 'power_noscale' is "
                        "the paper's PN* (PowerNorm without its layer-scale)")
    g.add_argument("--encoder-norm-type", choices=NORM_TYPES, metavar="NAME",
                   help="override --norm-type for the encoder (its layers and final norm)")
    g.add_argument("--decoder-norm-type", choices=NORM_TYPES, metavar="NAME",
                   help="override --norm-type for the decoder (its layers and final norm)")
    g.add_argument("--un-window", type=_argtype(check_window, "--un-window", _parse_window),
                   metavar="M[,M_BWD]",
                   help="UN window M: batches averaged in the forward (geometric mean) and "
                        "backward (moving average); 'F,B' sets them apart (default: 4)")
    g.add_argument("--un-warmup", type=_argtype(check_warmup, "--un-warmup", _parse_int), metavar="W",
                   help="UN warmup: steps normalised by the current batch only (default: 4000). "
                        "UN counts steps in training forward calls, not updates: with "
                        "--update-freq K the warmup of W ends after W/K updates (and r's "
                        "schedule, which starts after max(1000, W) calls, after max(1000, W)/K)")
    g.add_argument("--un-momentum", type=_argtype(check_momentum, "--un-momentum", float), metavar="A",
                   help="UN momentum alpha of running_var and the gradient EMA, in (0, 1) (default: 0.9)")
    g.add_argument("--un-eps", type=_argtype(check_eps, "--un-eps", float), metavar="EPS",
                   help="UN epsilon, > 0 (default: 1e-5)")
    g.add_argument("--un-outlier-filtration", action="store_true",
                   help="UN: skip the moving averages on outlier batches (the authors use it for "
                        "vision, not NMT)")
    g.add_argument("--un-count-padding", action="store_true",
                   help="UN, PN, MABN: count padding tokens in the statistics, as the authors' "
                        "released NMT code did (default: padding is excluded)")
    g.add_argument("--un-no-fp-gm", action="store_true",
                   help="UN ablation (Table 9, 'FP GM'): normalise by the current batch, no geometric mean")
    g.add_argument("--un-no-bp-sma", action="store_true",
                   help="UN ablation (Table 9, 'BP AM'): no simple moving average in the backward")
    g.add_argument("--un-no-bp-ema", action="store_true",
                   help="UN ablation (Table 9, 'BP alpha'): no exponential moving average in the backward")
    g.add_argument("--pn-warmup", type=_argtype(check_warmup, "--pn-warmup", _parse_int), metavar="W",
                   help="PowerNorm warmup (default: --warmup-updates, as in the PowerNorm recipe, else "
                        "4000), counted in training forward calls: W/K updates with --update-freq K")
    g.add_argument("--pn-alpha-fwd", type=_argtype(check_momentum, "--pn-alpha-fwd", float), metavar="A",
                   help="PowerNorm forward momentum, in (0, 1) (default: 0.9)")
    g.add_argument("--pn-alpha-bkw", type=_argtype(check_momentum, "--pn-alpha-bkw", float), metavar="A",
                   help="PowerNorm backward momentum, in (0, 1) (default: 0.9)")
    g.add_argument("--mabn-window", type=_argtype(check_window, "--mabn-window", _parse_int), metavar="M",
                   help="MABN window (default: 16, the release's real_B / B)")
    g.add_argument("--mabn-warmup", type=_argtype(check_warmup, "--mabn-warmup", _parse_int), metavar="W",
                   help="MABN warmup (default: 100), counted in training forward calls: W/K "
                        "updates with --update-freq K")
    g.add_argument("--mabn-momentum", type=_argtype(check_momentum, "--mabn-momentum", float), metavar="A",
                   help="MABN running_var momentum, in (0, 1) (default: 0.98)")
    g.add_argument("--bn-momentum", type=_argtype(check_momentum, "--bn-momentum", float), metavar="A",
                   help="BatchNorm running-statistics momentum, PyTorch convention (default: 0.1)")
    g.add_argument("--sync-norm-stats", action="store_true",
                   help="multi-process training: the batch statistics of UN, PN, PN*, BN and MABN "
                        "are reduced over all data-parallel ranks, forward and backward (one "
                        "all-reduce per norm call and direction), so N ranks compute what one "
                        "process computes on their concatenated batches and keep identical "
                        "running buffers. Default: each rank normalises by its own batch, its "
                        "buffers drift apart from the other ranks', and the checkpoint holds rank "
                        "0's. No effect on LN, RMSNorm, none, or with one process")
    g.add_argument("--fused-output-projection", action="store_true",
                   help="internal, set by un-fuse in the checkpoints it writes: the decoder's "
                        "output projection is untied from the embeddings and has a bias")


NORM_DEFAULTS = dict(
    norm_type="un", encoder_norm_type=None, decoder_norm_type=None,
    un_window=4, un_warmup=4000, un_momentum=UN_DEFAULT_MOMENTUM, un_eps=1e-5, un_outlier_filtration=False,
    un_count_padding=False, un_no_fp_gm=False, un_no_bp_sma=False, un_no_bp_ema=False,
    pn_warmup=None, pn_alpha_fwd=0.9, pn_alpha_bkw=0.9,
    mabn_window=16, mabn_warmup=100, mabn_momentum=0.98, bn_momentum=0.1,
    sync_norm_stats=False, fused_output_projection=False,
)


def set_norm_defaults(args) -> None:
    """Fill every norm flag the user left unset (fairseq's architecture-function style)."""
    for name, value in NORM_DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def norm_type_for(cfg, side: str) -> str:
    """The norm name for ``side`` ('encoder' or 'decoder'), with its override applied."""
    return getattr(cfg, f"{side}_norm_type", None) or getattr(cfg, "norm_type", None) or "un"


def norm_options(cfg, name: str, num_heads: int) -> Dict[str, Any]:
    """Constructor options of norm ``name`` from the parsed flags."""
    options = _own_options(cfg, name, num_heads)
    if name in BATCH_STAT_NORM_TYPES:
        options["sync_stats"] = bool(getattr(cfg, "sync_norm_stats", False))
    return options


def _own_options(cfg, name: str, num_heads: int) -> Dict[str, Any]:
    """The options that only norm ``name`` takes."""
    count_padding = bool(getattr(cfg, "un_count_padding", False))
    if name == "un":
        return dict(
            window=cfg.un_window, warmup=cfg.un_warmup, momentum=cfg.un_momentum, eps=cfg.un_eps,
            outlier_filtration=bool(cfg.un_outlier_filtration), count_padding=count_padding,
            fp_geometric_mean=not cfg.un_no_fp_gm, bp_moving_average=not cfg.un_no_bp_sma,
            bp_momentum=not cfg.un_no_bp_ema,
        )
    if name in ("power", "power_noscale"):
        warmup = cfg.pn_warmup
        if warmup is None:
            warmup = getattr(cfg, "warmup_updates", None) or 4000
        options = dict(warmup=int(warmup), alpha_fwd=cfg.pn_alpha_fwd, alpha_bkw=cfg.pn_alpha_bkw,
                       count_padding=count_padding)
        if name == "power":
            options["num_groups"] = num_heads
        return options
    if name == "mabn":
        return dict(window=cfg.mabn_window, warmup=cfg.mabn_warmup, momentum=cfg.mabn_momentum,
                    count_padding=count_padding)
    if name == "batch":
        return dict(momentum=cfg.bn_momentum)
    return {}


def make_norm_factory(cfg, side: str, num_heads: int) -> Callable[[int], nn.Module]:
    """A ``C -> norm`` builder for one side of the model."""
    name = norm_type_for(cfg, side)
    options = norm_options(cfg, name, num_heads)
    return lambda num_features: build_norm(name, num_features, **options)


def validate_norm_args(args) -> None:
    """Build one norm per side from ``args`` so that bad values fail before the model."""
    for side, heads in (("encoder", args.encoder_attention_heads), ("decoder", args.decoder_attention_heads)):
        make_norm_factory(args, side, heads)(getattr(args, f"{side}_embed_dim"))


def main() -> int:
    """Print the normalization flags with their help: fairseq's own ``--help`` exits before it
    adds a model's flags, so ``fairseq-train --arch transformer_un --help`` cannot show them."""
    parser = argparse.ArgumentParser(
        prog="fairseq-train --user-dir un_fairseq --arch transformer_un",
        description="The normalization flags of the transformer_un architectures (shown by "
                    "python -m un_fairseq.models.norm_args); every other flag is fairseq's.")
    add_norm_args(parser)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

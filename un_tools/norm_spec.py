"""The normalizers of the paper's Table 1 and each one's options, declared once.

This is the registry's table: one :class:`NormSpec` per ``--norm-type`` name, each holding
its class (by name, resolved by the plugin's ``un_fairseq.modules.registry``) and its options
(:class:`Option`: constructor name, command-line flag, type, default, help, validation).
Everything else is generated from it: the plugin's ``build_norm`` and ``norm_type_of``, the
constructors' defaults and checks, ``--norm-type`` and every ``--un-*``/``--pn-*``/
``--mabn-*``/``--bn-*`` flag of ``transformer_un`` (``un_fairseq/models/norm_args.py``), the
name lists below and the tests. It imports neither torch nor fairseq, so the reproduction
drivers read it without starting either.

Adding a normalizer: write its class under ``un_fairseq/modules/`` (exported from that
package), add one :class:`NormSpec` to :data:`NORM_SPECS`; see ``docs/normalizers.md``.
"""

from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional, Tuple, Union

# -- validation: every error names the option, the value and what is allowed -----------


def check_window(name: str, window: Union[int, Tuple[int, int], list]) -> Tuple[int, int]:
    """An int ``M`` or a pair ``(M_forward, M_backward)``, each a whole number >= 1."""
    pair = tuple(window) if isinstance(window, (tuple, list)) else (window, window)
    if len(pair) != 2 or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in pair):
        raise ValueError(
            f"{name}={window!r} is not allowed: give a whole number >= 1, or a pair "
            f"(forward, backward) of such numbers"
        )
    return pair


def check_momentum(name: str, value: float) -> float:
    """A float strictly between 0 and 1."""
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name}={value!r} is not allowed: it must lie strictly between 0 and 1")
    return float(value)


def check_warmup(name: str, value: int) -> int:
    """A whole number >= 0."""
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed: give a whole number >= 0")
    return int(value)


def check_eps(name: str, value: float) -> float:
    """A float > 0."""
    if not float(value) > 0.0:
        raise ValueError(f"{name}={value!r} is not allowed: it must be > 0")
    return float(value)


def check_flag(name: str, value: Any) -> bool:
    """A switch: anything truthy."""
    return bool(value)


def check_groups(name: str, value: int) -> int:
    """A whole number >= 1 (divisibility by ``C`` is checked by the module, which knows ``C``)."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: give a whole number >= 1")
    return int(value)


# -- command-line parsing of one value (before the check) ------------------------------


def parse_window(text: str) -> Union[int, Tuple[int, ...]]:
    """``"4"`` -> 4, ``"4,2"`` -> (4, 2)."""
    parts = [int(p) for p in str(text).split(",")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def parse_int(text: str) -> int:
    """A whole number, also written as ``4e3`` or ``4000.0``."""
    value = float(text)
    if value != int(value):
        raise ValueError("not a whole number")
    return int(value)


#: How each kind of option is checked, parsed from the command line, and shown (metavar).
KINDS: Dict[str, Tuple[Callable, Optional[Callable], str]] = {
    "window": (check_window, parse_window, "M"),
    "warmup": (check_warmup, parse_int, "W"),
    "momentum": (check_momentum, float, "A"),
    "eps": (check_eps, float, "EPS"),
    "groups": (check_groups, parse_int, "G"),
    "flag": (check_flag, None, ""),
}


@dataclass(frozen=True)
class Option:
    """One constructor option of a normalizer, and the flag that sets it (if any).

    ``negated``: the flag switches the option off (``--un-no-fp-gm`` sets
    ``fp_geometric_mean=False``). ``flag_default``: the flag's own default when it differs
    from the option's (None: "unset", resolved by ``fallback``). ``fallback``: a fairseq
    argument read when the flag is unset (PowerNorm's warmup: ``--warmup-updates``).
    ``from_model``: the value comes from the model, not a flag (PowerNorm's groups: the
    attention heads).
    """

    name: str
    kind: str
    default: Any
    help: str
    flag: Optional[str] = None
    negated: bool = False
    metavar: Optional[str] = None
    flag_default: Any = "same"
    fallback: Optional[str] = None
    from_model: Optional[str] = None

    def check(self, value: Any, name: Optional[str] = None) -> Any:
        """``value`` validated (and normalised) for this option; ValueError names it."""
        return KINDS[self.kind][0](name or self.name, value)

    @property
    def dest(self) -> Optional[str]:
        """The argparse destination of the flag (``--un-no-fp-gm`` -> ``un_no_fp_gm``)."""
        return None if self.flag is None else self.flag.lstrip("-").replace("-", "_")

    @property
    def unset(self) -> Any:
        """What the flag holds when it is not given (stored in checkpoints' args)."""
        if self.kind == "flag":
            return False
        return self.default if self.flag_default == "same" else self.flag_default


@dataclass(frozen=True)
class NormSpec:
    """One ``--norm-type``: its class, fixed constructor arguments and options."""

    name: str
    label: str
    cls: str
    doc: str
    offline: bool
    batch_stats: bool = False
    options: Tuple[Option, ...] = ()
    fixed: Dict[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise KeyError(f"{self.name} has no option {name!r}: it has {', '.join(self.option_names)}")

    @property
    def option_names(self) -> Tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def default(self, name: str) -> Any:
        return self.option(name).default

    @property
    def defaults(self) -> SimpleNamespace:
        """Every option's default as attributes (the constructors' signatures read them)."""
        return SimpleNamespace(**{o.name: o.default for o in self.options})

    def check(self, **values: Any) -> Dict[str, Any]:
        """Every given option validated; an unknown option is an error naming the allowed."""
        unknown = set(values) - set(self.option_names)
        if unknown:
            raise TypeError(
                f"{self.name} takes no option {', '.join(sorted(unknown))}: it takes "
                f"{', '.join(self.option_names) or 'none'}"
            )
        return {k: self.option(k).check(v) for k, v in values.items()}


# -- the options -------------------------------------------------------------------------

EPS = Option("eps", "eps", 1e-5, "added to every variance, > 0")
COUNT_PADDING = Option(
    "count_padding", "flag", False,
    "count padding tokens in the statistics, as the authors' released NMT code did "
    "(default: padding is excluded)", flag="--un-count-padding")
SYNC_STATS = Option(
    "sync_stats", "flag", False,
    "multi-process training: the batch statistics are reduced over all data-parallel ranks, "
    "forward and backward (one all-reduce per norm call and direction), so N ranks compute what "
    "one process computes on their concatenated batches and keep identical running buffers. "
    "Default: each rank normalises by its own batch, its buffers drift apart from the other "
    "ranks', and the checkpoint holds rank 0's. No effect with one process",
    flag="--sync-norm-stats")

UN_OPTIONS = (
    Option("window", "window", 4,
           "window M: batches averaged in the forward (geometric mean) and backward (moving "
           "average); 'F,B' sets them apart", flag="--un-window", metavar="M[,M_BWD]"),
    Option("warmup", "warmup", 4000,
           "steps normalised by the current batch only. UN counts steps in training forward "
           "calls, not updates: with --update-freq K the warmup of W ends after W/K updates (and "
           "r's schedule, which starts after max(1000, W) calls, after max(1000, W)/K)",
           flag="--un-warmup"),
    Option("momentum", "momentum", 0.9,
           "momentum alpha of running_var and the gradient EMA, in (0, 1)", flag="--un-momentum"),
    replace(EPS, flag="--un-eps"),
    Option("outlier_filtration", "flag", False,
           "skip the moving averages on outlier batches (the authors use it for vision, not NMT)",
           flag="--un-outlier-filtration"),
    COUNT_PADDING,
    Option("fp_geometric_mean", "flag", True,
           "ablation (Table 9, 'FP GM'): normalise by the current batch, no geometric mean",
           flag="--un-no-fp-gm", negated=True),
    Option("bp_moving_average", "flag", True,
           "ablation (Table 9, 'BP AM'): no simple moving average in the backward",
           flag="--un-no-bp-sma", negated=True),
    Option("bp_momentum", "flag", True,
           "ablation (Table 9, 'BP alpha'): no exponential moving average in the backward",
           flag="--un-no-bp-ema", negated=True),
    SYNC_STATS,
)

PN_OPTIONS = (
    Option("warmup", "warmup", 4000,
           "warmup, counted in training forward calls: W/K updates with --update-freq K; as in "
           "the PowerNorm recipe it defaults to the learning-rate warmup",
           flag="--pn-warmup", flag_default=None, fallback="warmup_updates"),
    Option("alpha_fwd", "momentum", 0.9, "forward momentum, in (0, 1)", flag="--pn-alpha-fwd"),
    Option("alpha_bkw", "momentum", 0.9, "backward momentum, in (0, 1)", flag="--pn-alpha-bkw"),
    EPS,
    COUNT_PADDING,
    SYNC_STATS,
)
PN_GROUPS = Option("num_groups", "groups", 4, "groups of the layer-scale (the model passes its "
                   "attention heads)", from_model="attention_heads")

MABN_OPTIONS = (
    Option("window", "window", 16, "window (the release's real_B / B)", flag="--mabn-window"),
    Option("warmup", "warmup", 100,
           "warmup, counted in training forward calls: W/K updates with --update-freq K",
           flag="--mabn-warmup"),
    Option("momentum", "momentum", 0.98, "running_var momentum, in (0, 1)", flag="--mabn-momentum"),
    EPS,
    COUNT_PADDING,
    SYNC_STATS,
)

BN_OPTIONS = (
    Option("momentum", "momentum", 0.1, "running-statistics momentum, PyTorch convention",
           flag="--bn-momentum"),
    EPS,
    SYNC_STATS,
)

_SPECS = (
    NormSpec("un", "UN", "UnifiedNorm", "Unified Normalization (Yang et al., ACM MM 2022)",
             offline=True, batch_stats=True, options=UN_OPTIONS),
    NormSpec("layer", "LN", "LayerNorm", "LayerNorm (Ba et al., 2016)", offline=False,
             options=(EPS,)),
    NormSpec("rms", "RMSNorm", "RMSNorm", "RMSNorm (Zhang & Sennrich, NeurIPS 2019)",
             offline=False, options=(EPS,)),
    NormSpec("power", "PN", "PowerNorm", "PowerNorm (Shen et al., ICML 2020), with its "
             "layer-scale", offline=False, batch_stats=True, options=(PN_GROUPS, *PN_OPTIONS),
             fixed={"layer_scale": True}),
    NormSpec("power_noscale", "PN*", "PowerNorm", "the paper's PN*: PowerNorm without its "
             "layer-scale", offline=True, batch_stats=True, options=PN_OPTIONS,
             fixed={"layer_scale": False}),
    NormSpec("batch", "BN", "MaskedBatchNorm", "batch normalisation over tokens (Ioffe & Szegedy, "
             "ICML 2015)", offline=True, batch_stats=True, options=BN_OPTIONS),
    NormSpec("mabn", "MABN", "MABN", "moving-average batch norm (Yan et al., ICLR 2020)",
             offline=True, batch_stats=True, options=MABN_OPTIONS),
    NormSpec("none", "NoNorm", "NoNorm", "no normalisation (the identity)", offline=False),
)

#: The registry's table: ``--norm-type`` name -> its spec, in Table 1's order of the paper.
NORM_SPECS: Dict[str, NormSpec] = {spec.name: spec for spec in _SPECS}

#: Every normalizer of the paper's Table 1, by its ``--norm-type`` name.
NORM_TYPES: Tuple[str, ...] = tuple(NORM_SPECS)

#: Normalizers whose inference map is a fixed per-channel affine map (foldable).
OFFLINE_NORM_TYPES: Tuple[str, ...] = tuple(n for n, s in NORM_SPECS.items() if s.offline)

#: Normalizers that use batch statistics in training (they take ``sync_stats``).
BATCH_STAT_NORM_TYPES: Tuple[str, ...] = tuple(n for n, s in NORM_SPECS.items() if s.batch_stats)

#: ``--norm-type``'s default.
DEFAULT_NORM_TYPE = "un"

#: UN's default momentum: the reference row of Table 10.
UN_DEFAULT_MOMENTUM = NORM_SPECS["un"].default("momentum")


def flag_options() -> Dict[str, Tuple[Option, Tuple[str, ...]]]:
    """Every flag, once: ``dest -> (option, the norm types it configures)``, in table order."""
    flags: Dict[str, Tuple[Option, Tuple[str, ...]]] = {}
    for spec in _SPECS:
        for opt in spec.options:
            if opt.flag is not None:
                prev = flags.get(opt.dest)
                if prev is not None and prev[0] != opt:
                    raise AssertionError(f"{opt.flag} is declared twice, differently")
                flags[opt.dest] = (opt, (prev[1] if prev else ()) + (spec.name,))
    return flags

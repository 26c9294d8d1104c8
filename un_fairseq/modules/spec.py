"""What a normalizer's registration holds (:class:`NormSpec`) and how its options are
checked and parsed (:class:`Option`); the registrations themselves are on the classes
(``@register_norm`` in each module, collected by ``registry.py``).

An :class:`Option` is one constructor argument: its kind (how it is checked, parsed from the
command line and shown), default, help and, if it has one, its ``fairseq-train`` flag. The
constructors' defaults and checks, ``build_norm``, ``norm_type_of`` and every norm flag of
``transformer_un`` (``un_fairseq/models/norm_args.py``) are generated from them.
"""

import math
from dataclasses import dataclass, field
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


def check_real(name: str, value: float) -> float:
    """Any finite float (an initial value of a learnable parameter, say)."""
    if isinstance(value, bool) or not math.isfinite(float(value)):
        raise ValueError(f"{name}={value!r} is not allowed: give a finite number")
    return float(value)


def check_positive(name: str, value: float) -> float:
    """A finite float > 0 (a scale such as DyT's alpha: 0 would start the layer as a constant)."""
    value = check_real(name, value)
    if value <= 0:
        raise ValueError(f"{name}={value!r} is not allowed: give a finite number > 0")
    return value


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
    "real": (check_real, float, "X"),
    "positive": (check_positive, float, "X"),
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
    """One ``--norm-type``: its class and fixed constructor arguments, its options, and what
    tables and benchmarks show: ``label`` and ``row`` (its row in the paper's Table 1,
    which orders every list of norms). ``offline``: the inference map is a fixed per-channel
    affine map (foldable); ``batch_stats``: training uses batch statistics (the norm takes
    ``sync_stats``); ``stands_for``: other classes counted as this norm (fairseq's own
    LayerNorm for ``layer``); ``default``: the ``--norm-type`` default."""

    name: str
    label: str
    row: int
    cls: type
    doc: str
    offline: bool
    batch_stats: bool = False
    options: Tuple[Option, ...] = ()
    fixed: Dict[str, Any] = field(default_factory=dict)
    stands_for: Tuple[type, ...] = ()
    default: bool = False

    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise KeyError(f"{self.name} has no option {name!r}: it has {', '.join(self.option_names)}")

    @property
    def option_names(self) -> Tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def default_of(self, name: str) -> Any:
        return self.option(name).default

    def check(self, **values: Any) -> Dict[str, Any]:
        """Every given option validated; an unknown option is an error naming the allowed."""
        return check_options(self.name, self.options, values)


def defaults(options: Tuple[Option, ...]) -> SimpleNamespace:
    """Every option's default as attributes (the constructors' signatures read them)."""
    return SimpleNamespace(**{o.name: o.default for o in options})


def check_options(owner: str, options: Tuple[Option, ...], values: Dict[str, Any]) -> Dict[str, Any]:
    """``values`` validated against ``options``; an unknown one is an error naming the allowed."""
    names = tuple(o.name for o in options)
    unknown = set(values) - set(names)
    if unknown:
        raise TypeError(
            f"{owner} takes no option {', '.join(sorted(unknown))}: it takes {', '.join(names) or 'no option'}"
        )
    by_name = {o.name: o for o in options}
    return {k: by_name[k].check(v) for k, v in values.items()}


# -- options shared by several norms ---------------------------------------------------

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

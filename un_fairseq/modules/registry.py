"""The norm registry: every ``--norm-type`` name and what it builds, collected from the
``@register_norm`` declarations on the normalizer classes.

A normalizer is declared once, on its class::

    @register_norm("name", label="Label", row=9, doc="...", offline=True, options=(...))
    class MyNorm(PaddingAwareNorm): ...

Every module of this package is imported when the registry is first read, so a new module
file is all it takes to register a norm; ``--norm-type``, every norm flag
(``models/norm_args.py``), ``build_norm``, ``norm_type_of``, folding, the benchmarks' labels
and the reproduction tables read the registry. Lists of names come in the order of ``row``.
"""

import importlib
import pkgutil
from typing import Any, Callable, Dict, Tuple

from torch import nn

from .spec import NormSpec, Option

_SPECS: Dict[str, NormSpec] = {}
_loaded = False


def register_norm(name: str, **declaration: Any) -> Callable[[type], type]:
    """Class decorator: register ``name`` as a ``--norm-type`` that builds the class (with
    ``fixed`` constructor arguments, if given). ``declaration``: the :class:`NormSpec`
    fields ``label``, ``row``, ``doc``, ``offline``, and optionally ``batch_stats``,
    ``options``, ``fixed``, ``stands_for``, ``default``. A class may carry several names
    (PowerNorm: with and without its layer-scale)."""

    def decorate(cls: type) -> type:
        if name in _SPECS:
            raise ValueError(f"norm type {name!r} is registered twice ({_SPECS[name].cls.__name__}, {cls.__name__})")
        spec = NormSpec(name=name, cls=cls, **declaration)
        taken = {s.row: s.name for s in _SPECS.values()}
        if spec.row in taken:
            raise ValueError(f"norm types {taken[spec.row]!r} and {name!r} both claim row {spec.row}")
        _SPECS[name] = spec
        return cls

    return decorate


def _load_all() -> None:
    """Import every module of this package, so that every declaration has run."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
            importlib.import_module(f"{__package__}.{info.name}")
        _loaded = True


def norm_specs() -> Dict[str, NormSpec]:
    """``--norm-type`` name -> its registration, in the order of the paper's Table 1."""
    _load_all()
    return dict(sorted(_SPECS.items(), key=lambda item: item[1].row))


def spec_of(name: str) -> NormSpec:
    specs = norm_specs()
    if name not in specs:
        raise ValueError(f"unknown norm type {name!r}: choose one of {', '.join(specs)}")
    return specs[name]


def norm_types() -> Tuple[str, ...]:
    """Every registered ``--norm-type`` name."""
    return tuple(norm_specs())


def offline_norm_types() -> Tuple[str, ...]:
    """Normalizers whose inference map is a fixed per-channel affine map (foldable)."""
    return tuple(n for n, s in norm_specs().items() if s.offline)


def batch_stat_norm_types() -> Tuple[str, ...]:
    """Normalizers that use batch statistics in training (they take ``sync_stats``)."""
    return tuple(n for n, s in norm_specs().items() if s.batch_stats)


def default_norm_type() -> str:
    """``--norm-type``'s default."""
    (name,) = [n for n, s in norm_specs().items() if s.default]
    return name


def name_of(cls: type, **fixed: Any) -> str:
    """The ``--norm-type`` name that builds ``cls`` with the ``fixed`` arguments given (a
    class with one name needs none): how code names a norm without spelling its name."""
    found = [n for n, s in norm_specs().items()
             if s.cls is cls and all(s.fixed.get(k) == v for k, v in fixed.items())]
    if len(found) != 1:
        raise ValueError(f"{cls.__name__} with {fixed} is registered as {found or 'nothing'}")
    return found[0]


def norm_class(name: str) -> type:
    """The class that ``--norm-type name`` builds."""
    return spec_of(name).cls


def build_norm(name: str, num_features: int, **options: Any) -> nn.Module:
    """Build the normalizer ``name`` over ``num_features`` channels.

    ``options`` go to its constructor (e.g. ``window``, ``warmup`` for UN); the ones its
    registration does not list are an error, so a typo cannot pass silently.
    """
    spec = spec_of(name)
    spec.check(**options)  # unknown or bad options fail here, naming the option
    return spec.cls(num_features, **spec.fixed, **options)


def norm_type_of(module: nn.Module) -> str:
    """The ``--norm-type`` name of a built normalizer (PowerNorm with or without its
    layer-scale included; fairseq's own LayerNorm counts as LN); the class name otherwise."""
    specs = norm_specs().items()
    for name, spec in specs:
        if type(module) is spec.cls and all(getattr(module, k) == v for k, v in spec.fixed.items()):
            return name
    for name, spec in specs:
        if isinstance(module, spec.stands_for):
            return name
    return type(module).__name__


def flag_options() -> Dict[str, Tuple[Option, Tuple[str, ...]]]:
    """Every flag, once: ``dest -> (option, the norm types it configures)``, in table order."""
    flags: Dict[str, Tuple[Option, Tuple[str, ...]]] = {}
    for spec in norm_specs().values():
        for opt in spec.options:
            if opt.flag is not None:
                prev = flags.get(opt.dest)
                if prev is not None and prev[0] != opt:
                    raise AssertionError(f"{opt.flag} is declared twice, differently")
                flags[opt.dest] = (opt, (prev[1] if prev else ()) + (spec.name,))
    return flags

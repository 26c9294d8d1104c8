"""Validation of normalizer options: every error names the option, the value and what is
allowed, and is raised before anything is built."""

from typing import Tuple, Union


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
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name}={value!r} is not allowed: it must lie strictly between 0 and 1")
    return float(value)


def check_warmup(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed: give a whole number >= 0")
    return int(value)


def check_eps(name: str, value: float) -> float:
    if not float(value) > 0.0:
        raise ValueError(f"{name}={value!r} is not allowed: it must be > 0")
    return float(value)

"""Argument checks shared by the simulators."""

from __future__ import annotations

import numpy as np


def check_real(value, name: str, *, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite float, optionally ``>= minimum`` or ``> 0``; else a ValueError naming ``name``."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if positive and not out > 0:
        raise ValueError(f"{name} must be positive; got {out:g}")
    if minimum is not None and out < minimum:
        raise ValueError(f"{name} must be finite and >= {minimum:g}; got {out:g}")
    return out


def check_count(value, name: str, minimum: int) -> int:
    """A whole number (``3`` or ``3.0``) at least ``minimum``; else a ValueError naming ``name``."""
    try:
        integral = not isinstance(value, (bool, np.bool_)) and float(value).is_integer()
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise ValueError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}")
    return value


def check_share(value, name: str) -> float:
    """A probability strictly between 0 and 1."""
    out = check_real(value, name)
    if not 0 < out < 1:
        raise ValueError(f"{name} must be in (0, 1); got {out:g}")
    return out

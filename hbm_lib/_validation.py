"""Input checks shared by the public functions.

Every public function of :mod:`hbm_lib` validates its arguments here, at the boundary, so that
nonsense input fails with a ``ValueError`` naming the argument instead of a NumPy traceback
from deep inside or a silent NaN in the output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def as_finite_1d(x: ArrayLike, name: str, *, min_length: int = 1) -> np.ndarray:
    """Return ``x`` as a 1-d float array, or raise a ``ValueError`` naming ``name``."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric; could not convert it to numbers ({err})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}")
    if arr.size < min_length:
        if arr.size == 0:
            raise ValueError(f"{name} is empty; need at least {min_length} value(s)")
        raise ValueError(f"{name} needs at least {min_length} values; got {arr.size}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = _first_bad(bad)
        raise ValueError(f"{name} must be finite; got {arr[i]} at position {i}")
    return arr


def as_positive_1d(x: ArrayLike, name: str, *, min_length: int = 1) -> np.ndarray:
    """Like :func:`as_finite_1d`, and every value must be strictly positive."""
    arr = as_finite_1d(x, name, min_length=min_length)
    bad = arr <= 0
    if bad.any():
        i = _first_bad(bad)
        raise ValueError(f"{name} must be positive; got {arr[i]:g} at position {i}")
    return arr


def check_same_length(**arrays: np.ndarray) -> int:
    """Raise unless every array has the same length; return that length."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"lengths differ: {described}; they must match (one value per unit)")
    return next(iter(lengths.values()))


def check_level(level: float) -> float:
    """Raise unless ``level`` is a probability strictly between 0 and 1."""
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a number in (0, 1); got {level!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    return level


def as_labels(labels: ArrayLike, n: int, name: str) -> tuple[np.ndarray, pd.Index]:
    """Encode one label per unit as integer codes.

    Returns ``(codes, categories)`` with ``categories`` in order of first appearance, so that
    results list groups in the order the caller's data does.
    """
    values = pd.Series(np.asarray(labels, dtype=object) if not isinstance(labels, pd.Series) else labels.to_numpy())
    if values.ndim != 1 or len(values) != n:
        raise ValueError(f"{name} must have one label per unit: expected {n}, got {len(values)}")
    missing = values.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{name} has a missing label at position {_first_bad(missing)}")
    codes, categories = pd.factorize(values, sort=False)
    return codes.astype(np.int64), pd.Index(categories, name=name)


def unit_labels(units: Any, y: Any, n: int, *, name: str = "units", per: str = "unit") -> pd.Index:
    """Labels: ``units`` if given, else the index of a pandas ``y``, else ``0..n-1``.

    ``name`` is the argument named in error messages and ``per`` what one label stands for
    (``unit_labels(variants, successes, n, name="variants", per="variant")``); the returned index is
    named ``per``. Labels must be one per item, none missing, all distinct.
    """
    if units is None:
        if isinstance(y, pd.Series):
            labels = pd.Index(y.index)
        else:
            labels = pd.RangeIndex(n)
    else:
        values = units.to_numpy() if isinstance(units, (pd.Index, pd.Series)) else units
        labels = pd.Index(np.asarray(values, dtype=object).reshape(-1))
    if len(labels) != n:
        raise ValueError(f"{name} must have one label per {per}: expected {n}, got {len(labels)}")
    missing = pd.isna(labels)
    if missing.any():
        raise ValueError(f"{name} has a missing label at position {_first_bad(np.asarray(missing))}")
    if labels.has_duplicates:
        dup = labels[labels.duplicated()][0]
        raise ValueError(f"{name} must be unique; {dup!r} appears more than once")
    return labels.rename(per)


def group_dataset(data: Any, name: str, group: str = "posterior") -> xr.Dataset:
    """The ``group`` of a fit as an :class:`xarray.Dataset`, or a ``ValueError`` naming ``name``.

    ``data`` may be the whole fit (an :class:`xarray.DataTree` with a ``group`` child, as
    :func:`pymc.sample` and :func:`hbm_lib.fit` return), the group's own node
    (``idata["posterior"]``) or the group's :class:`xarray.Dataset`.
    """
    if isinstance(data, xr.DataTree):
        if group in data.children:
            return data[group].to_dataset()
        if data.data_vars and not data.children:  # the group's node itself
            return data.to_dataset()
        raise ValueError(f"{name}: the DataTree has no {group} group (it has {sorted(data.children)})")
    if isinstance(data, xr.Dataset):
        return data
    raise ValueError(
        f"{name} must be an xarray.DataTree with a {group} group (e.g. from hbm_lib.fit) or that "
        f"group's xarray.Dataset; got {type(data).__name__}"
    )

"""Input checks shared by the public functions.

Every public function of :mod:`hbm_lib` validates its arguments here, at the boundary, so that
nonsense input fails with a ``ValueError`` (or ``TypeError``) naming the argument instead of a
NumPy traceback from deep inside or a silent NaN in the output.

Labelled inputs. Functions that take several per-unit inputs (estimates, standard errors, labels,
a truth to score against) accept plain arrays, which are paired by position, and pandas objects,
which are paired by their index: :func:`align` reorders every pandas input to the order of the
first one, and refuses inputs whose indexes hold different labels, naming both arguments and the
first label that one has and the other lacks. Nothing labelled is ever paired by position.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

#: What a seed argument accepts everywhere in the library.
Seed = int | np.random.Generator
#: The seed used where none is given, so that two runs give identical numbers.
DEFAULT_SEED = 20_240_601


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


# --------------------------------------------------------------------------------------------
# scalars


def check_finite(value: Any, name: str) -> float:
    """``value`` as a finite float, or a ``ValueError`` naming ``name`` (booleans refused)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number; got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {number}")
    return number


def check_positive(value: Any, name: str) -> float:
    number = check_finite(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be positive; got {number:g}")
    return number


def check_open_unit(value: Any, name: str) -> float:
    number = check_finite(value, name)
    if not 0.0 < number < 1.0:
        raise ValueError(f"{name} must be in (0, 1); got {number:g}")
    return number


def check_int(value: Any, name: str, *, minimum: int) -> int:
    """A whole number ``>= minimum`` (Python or NumPy integer; booleans and floats refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def check_level(level: Any, name: str = "level") -> float:
    """Raise unless ``level`` is a probability strictly between 0 and 1."""
    if isinstance(level, (bool, np.bool_)):
        raise ValueError(f"{name} must be a number in (0, 1); got {level!r}")
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1); got {level!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must be in (0, 1), e.g. 0.95; got {level}")
    return level


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def check_dim_name(dim: Any, name: str, *, taken: Iterable[str] = ()) -> str:
    if not isinstance(dim, str) or not dim:
        raise ValueError(f"{name} must be a non-empty string; got {dim!r}")
    if dim in ("chain", "draw", "sample", *taken):
        raise ValueError(f"{name} must not be {dim!r}: that name is taken")
    return dim


def as_generator(seed: Any, name: str = "seed") -> np.random.Generator:
    """A NumPy ``Generator`` from ``seed``: a non-negative integer, or a ``Generator`` (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer or a numpy.random.Generator; got {seed!r}")
    return np.random.default_rng(int(seed))


def as_seed_int(seed: Any, name: str = "seed") -> int:
    """An integer seed for libraries that want one (PyMC): the integer itself, or one drawn from a
    ``Generator`` (which advances it)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**31 - 1))
    as_generator(seed, name)  # the checks
    return int(seed)


# the names other libraries use for what this one calls seed
_ALIASES = {"random_seed": "seed", "rng": "seed", "random_state": "seed"}


def reject_unknown(function: str, given: Mapping[str, Any], known: Iterable[str]) -> None:
    """``TypeError`` for the first option in ``given`` that ``function`` does not know, with the
    closest known name when there is one (``draw`` -> ``draws``)."""
    known = list(known)
    for option in given:
        if option not in known:
            alias = _ALIASES.get(option)
            close = [alias] if alias in known else difflib.get_close_matches(option, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it accepts {sorted(known)}"
            raise TypeError(f"{function} got an unknown option {option!r}{hint}")


# --------------------------------------------------------------------------------------------
# arrays


def as_finite_1d(x: ArrayLike, name: str, *, min_length: int = 1) -> np.ndarray:
    """Return ``x`` as a 1-d float array, or raise a ``ValueError`` naming ``name``."""
    if isinstance(x, (str, bytes)):
        raise ValueError(f"{name} must be numeric; got a string {x!r}")
    if isinstance(x, pd.DataFrame):
        raise ValueError(f"{name} must be one-dimensional; got a DataFrame with columns {list(x.columns)}")
    values = x.to_numpy() if isinstance(x, (pd.Series, pd.Index)) else x
    if isinstance(values, np.ndarray) and values.dtype == bool:
        raise ValueError(f"{name} must be numeric; got booleans")
    try:
        arr = np.asarray(values, dtype=float)
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


def check_columns(frame: Any, name: str, columns: Mapping[str, str | None]) -> None:
    """Check that ``frame`` (the argument called ``name``) is a non-empty DataFrame holding every
    named column once; ``columns`` maps each keyword argument to the column it names (or None)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame; got {type(frame).__name__}")
    for argument, column in columns.items():
        if column is not None and not isinstance(column, str):
            raise TypeError(f"{argument} must be a column name (str); got {column!r}")
    missing = [c for c in columns.values() if c is not None and c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{name} is empty")
    doubled = [c for c in columns.values() if c is not None and (frame.columns == c).sum() > 1]
    if doubled:
        raise ValueError(f"{name} has more than one column named {doubled[0]!r}; rename them apart")


def _label_values(labels: Any, name: str) -> np.ndarray:
    """Labels as a 1-d object array, or a ``ValueError`` for anything that is not one label per unit."""
    if isinstance(labels, (str, bytes)) or np.ndim(labels) == 0:
        raise ValueError(f"{name} must hold one label per unit; got a single value {labels!r}")
    if isinstance(labels, pd.DataFrame):
        raise ValueError(f"{name} must be one-dimensional; got a DataFrame with columns {list(labels.columns)}")
    values = labels.to_numpy() if isinstance(labels, (pd.Series, pd.Index)) else labels
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}")
    return arr


def as_labels(labels: ArrayLike, n: int, name: str) -> tuple[np.ndarray, pd.Index]:
    """Encode one label per unit as integer codes.

    Returns ``(codes, categories)`` with ``categories`` in order of first appearance, so that
    results list groups in the order the caller's data does.
    """
    values = _label_values(labels, name)
    if len(values) != n:
        raise ValueError(f"{name} must have one label per unit: expected {n}, got {len(values)}")
    missing = pd.isna(values)
    if missing.any():
        raise ValueError(f"{name} has a missing label at position {_first_bad(missing)}")
    codes, categories = pd.factorize(pd.Series(values, dtype=object), sort=False)
    return codes.astype(np.int64), pd.Index(categories, name=name)


def unit_labels(units: Any, y: Any, n: int, *, name: str = "units", per: str = "unit") -> pd.Index:
    """Labels: ``units`` if given, else the index of a pandas ``y``, else ``0..n-1``.

    ``name`` is the argument named in error messages and ``per`` what one label stands for; the
    returned index keeps the name of ``y``'s index if it has one, else it is named ``per``.
    Labels must be one per item, none missing, all distinct.
    """
    if units is None:
        if isinstance(y, (pd.Series, pd.DataFrame)):
            labels = pd.Index(y.index)
        else:
            labels = pd.RangeIndex(n)
    else:
        values = _label_values(units, name)
        labels = pd.Index(values, name=getattr(units, "name", None) if isinstance(units, (pd.Series, pd.Index)) else None)
    if len(labels) != n:
        raise ValueError(f"{name} must have one label per {per}: expected {n}, got {len(labels)}")
    missing = pd.isna(labels)
    if missing.any():
        raise ValueError(f"{name} has a missing label at position {_first_bad(np.asarray(missing))}")
    if labels.has_duplicates:
        dup = labels[labels.duplicated()][0]
        raise ValueError(f"{name} must be unique; {dup!r} appears more than once")
    return labels if labels.name is not None else labels.rename(per)


def align(**inputs: Any) -> dict[str, Any]:
    """Pair per-unit inputs by label: reorder every pandas Series or DataFrame to the first one's index.

    ``None`` and unlabelled inputs (lists, NumPy arrays, a ``pandas.Index``) pass through as they
    are and are paired by position. Pandas inputs whose indexes are equal pass through too. Any
    other pair must hold the same labels, each once; the inputs are then reindexed to the order
    of the first pandas input. Otherwise a ``ValueError`` names both arguments and a label that
    one has and the other lacks (or the duplicated label that makes alignment ambiguous).

    Returns the inputs, in the same order and under the same names.
    """
    labelled = [(name, x) for name, x in inputs.items() if isinstance(x, (pd.Series, pd.DataFrame))]
    if len(labelled) < 2:
        return dict(inputs)
    ref_name, ref = labelled[0]
    out = dict(inputs)
    for name, x in labelled[1:]:
        if x.index.equals(ref.index):
            continue
        for who, index in ((ref_name, ref.index), (name, x.index)):
            if index.has_duplicates:
                dup = index[index.duplicated()][0]
                raise ValueError(
                    f"{who} has the index label {dup!r} more than once, so {ref_name} and {name} cannot "
                    "be paired by label; give unique index labels, or plain arrays (.to_numpy()) to "
                    "pair them by position"
                )
        if len(x.index) != len(ref.index) or not x.index.isin(ref.index).all() or not ref.index.isin(x.index).all():
            only_ref = ref.index[~ref.index.isin(x.index)]
            if len(only_ref):
                detail = f"{only_ref[0]!r} is in the index of {ref_name} but not in that of {name}"
            else:
                only_x = x.index[~x.index.isin(ref.index)]
                detail = f"{only_x[0]!r} is in the index of {name} but not in that of {ref_name}"
            raise ValueError(
                f"{ref_name} and {name} are labelled by different units: {detail}. Labelled inputs "
                "are paired by their index; align them, or pass plain arrays (.to_numpy()) to pair "
                "them by position"
            )
        out[name] = x.reindex(ref.index)
    return out


def group_dataset(data: Any, name: str, group: str = "posterior"):
    """The ``group`` of a fit as an :class:`xarray.Dataset`, or a ``ValueError`` naming ``name``.

    ``data`` may be the whole fit (an :class:`xarray.DataTree` with a ``group`` child, as
    :func:`pymc.sample` and :func:`hbm_lib.fit` return), the group's own node
    (``idata["posterior"]``) or the group's :class:`xarray.Dataset`.
    """
    import xarray as xr  # not at module level: pooling and metrics need no xarray

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

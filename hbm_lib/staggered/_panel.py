"""Reading a long panel: column checks, codes for units and periods, who is treated when.

The conventions, stated once: one row per unit and period; ``time`` holds integer-like numbers
(``3`` or ``3.0``) or pandas ``Period`` values (converted to their ordinals, so horizons count
periods of that frequency); ``first_treated`` is the first treated period, of the same kind,
constant within a unit, and **missing** (NaN, ``None``, ``pd.NA`` or ``NaT``) for units never
treated. A ``first_treated`` of ``inf``, or of ``0`` before the first observed period, is refused
with a message naming this convention, since other software codes never-treated units that way.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hbm_lib._validation import check_columns

NEVER_TREATED = "this library codes never-treated units by a missing first_treated (NaN, None, pd.NA or NaT)"


@dataclass
class Panel:
    labels: np.ndarray  # unit label per unit code, in order of first appearance
    periods: np.ndarray  # sorted distinct periods (int64)
    u: np.ndarray  # unit code per row
    t: np.ndarray  # period code per row
    time_values: np.ndarray  # period per row (int64)
    y: np.ndarray
    ft_obs: np.ndarray  # first treated period per row (float, NaN = never)
    ft_unit: np.ndarray  # first treated period per unit
    treated: np.ndarray  # bool per row
    cluster: np.ndarray  # cluster code per unit (the unit itself by default)
    cluster_labels: np.ndarray

    @property
    def n_units(self) -> int:
        return len(self.labels)

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    @property
    def horizon(self) -> np.ndarray:
        """Periods since adoption per row (float; NaN for never-treated units)."""
        return self.time_values - self.ft_obs


def check_count(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0; got {value!r}")
    return int(value)


def show(x) -> str:
    """repr of a label, without numpy's type wrapper."""
    return repr(x.item() if isinstance(x, np.generic) else x)


def fmt(x: float) -> str:
    return "missing" if np.isnan(x) else str(int(x))


def _row_label(panel: pd.DataFrame, i: int) -> str:
    return f"row {show(panel.index[i])}"


def _period_like(values: pd.Series, panel: pd.DataFrame, column: str, *, allow_missing: bool) -> np.ndarray:
    """Float array of integer-valued numbers (NaN where missing, if allowed); Periods as ordinals."""
    what = f"column {column!r}"
    if isinstance(values.dtype, pd.PeriodDtype):
        arr = np.where(values.isna().to_numpy(), np.nan, values.array.asi8.astype(float))
    elif pd.api.types.is_datetime64_any_dtype(values.dtype):
        raise ValueError(
            f"{what} holds datetimes; periods must be integer-like numbers or pandas Periods, so that "
            f"horizons count periods: convert with panel[{column!r}].dt.to_period('M') (or 'Q', 'Y', ...)"
        )
    elif pd.api.types.is_bool_dtype(values.dtype):
        raise ValueError(f"{what} must hold integer-like numbers; got booleans")
    elif pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=float, na_value=np.nan)
    else:
        arr = _objects_as_numbers(values, panel, what)
    nan = np.isnan(arr)
    if nan.any() and not allow_missing:
        raise ValueError(f"{what} has a missing value in {_row_label(panel, int(np.flatnonzero(nan)[0]))}")
    if allow_missing and np.isinf(arr).any():
        i = int(np.flatnonzero(np.isinf(arr))[0])
        raise ValueError(f"{what} is {arr[i]} in {_row_label(panel, i)}; {NEVER_TREATED}: replace inf with NaN")
    with np.errstate(invalid="ignore"):
        bad = ~nan & (~np.isfinite(arr) | (arr != np.round(arr)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} must hold integer-like numbers; got {float(arr[i])!r} in {_row_label(panel, i)}")
    return arr


def _objects_as_numbers(values: pd.Series, panel: pd.DataFrame, what: str) -> np.ndarray:
    objs = values.to_numpy(dtype=object)
    missing = pd.isna(values).to_numpy()
    if any(isinstance(v, pd.Period) for v in objs):
        return np.array([np.nan if m else float(v.ordinal) for v, m in zip(objs, missing, strict=True)])
    bad = np.array(
        [not m and (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)) for v, m in zip(objs, missing, strict=True)],
        dtype=bool,
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} must hold integer-like numbers; got {objs[i]!r} in {_row_label(panel, i)}")
    return np.array([np.nan if m else float(v) for v, m in zip(objs, missing, strict=True)], dtype=float)


def _codes(column: pd.Series, panel: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    no_label = column.isna().to_numpy()
    if no_label.any():
        raise ValueError(f"column {name!r} has a missing label in {_row_label(panel, int(np.flatnonzero(no_label)[0]))}")
    codes, labels = pd.factorize(column, sort=False)
    return codes.astype(np.int64), (np.asarray(labels, dtype=object) if labels.dtype == object else np.asarray(labels))


def _outcome(panel: pd.DataFrame, outcome: str, labels, u) -> np.ndarray:
    y_col = panel[outcome]
    if not pd.api.types.is_numeric_dtype(y_col.dtype) or pd.api.types.is_bool_dtype(y_col.dtype):
        raise ValueError(f"column {outcome!r} (the outcome) must be numeric; got dtype {y_col.dtype}")
    y = y_col.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"column {outcome!r} (the outcome) must be finite; got {y[i]} in {_row_label(panel, i)} "
            f"(unit {show(labels[u[i]])}), {int(bad.sum())} non-finite value(s) in all"
        )
    return y


def _unit_constant(values: np.ndarray, u: np.ndarray, n_units: int, labels, column: str) -> np.ndarray:
    """The value of each unit (its first row's); a ValueError if it varies within a unit."""
    per_unit = np.full(n_units, np.nan) if values.dtype.kind == "f" else np.empty(n_units, dtype=values.dtype)
    per_unit[u[::-1]] = values[::-1]  # first row of each unit
    ref = per_unit[u]
    same = (values == ref) | (pd.isna(values) & pd.isna(ref))
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        shown = (fmt(ref[i]), fmt(values[i])) if values.dtype.kind == "f" else (show(ref[i]), show(values[i]))
        raise ValueError(f"column {column!r} must be constant within each unit; unit {show(labels[u[i]])} has {shown[0]} and {shown[1]}")
    return per_unit


def prepare(panel, unit: str, time: str, outcome: str | None, first_treated: str, cluster: str | None = None) -> Panel:
    """Check a long panel and encode it (see the module docstring for the conventions); without an
    ``outcome`` column (``None``) the outcomes are zeros."""
    check_columns(panel, "panel", {"unit": unit, "time": time, "outcome": outcome, "first_treated": first_treated, "cluster": cluster})
    u, labels = _codes(panel[unit], panel, unit)
    y = _outcome(panel, outcome, labels, u) if outcome is not None else np.zeros(len(panel))
    time_values = _period_like(panel[time], panel, time, allow_missing=False).astype(np.int64)
    periods, t = np.unique(time_values, return_inverse=True)
    N, T = len(labels), len(periods)

    key = u * T + t
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(np.diff(key[order]) == 0)
    if dup.size:
        i = int(order[dup[0] + 1])
        raise ValueError(
            f"duplicate rows for ({unit}, {time}) = ({show(labels[u[i]])}, {time_values[i]}): each unit may "
            f"appear once per period ({dup.size} duplicate(s) in all)"
        )
    ft_obs = _period_like(panel[first_treated], panel, first_treated, allow_missing=True)
    ft_unit = _unit_constant(ft_obs, u, N, labels, first_treated)
    early = ft_unit == 0
    if early.any() and periods[0] > 0:
        raise ValueError(
            f"column {first_treated!r} is 0 for {int(early.sum())} unit(s) (e.g. {show(labels[np.flatnonzero(early)[0]])}), "
            f"before the first period ({periods[0]}): if 0 means never treated, replace it with NaN; {NEVER_TREATED}"
        )
    with np.errstate(invalid="ignore"):
        treated = ~np.isnan(ft_obs) & (time_values >= ft_obs)
    if cluster is None:
        cluster_codes, cluster_labels = np.arange(N), labels
    else:
        c, cluster_labels = _codes(panel[cluster], panel, cluster)
        cluster_codes = _unit_constant(c, u, N, labels, cluster).astype(np.int64)
    return Panel(labels, periods, u, t.astype(np.int64), time_values, y, ft_obs, ft_unit, treated, cluster_codes, cluster_labels)


def require_treated(d: Panel, first_treated: str) -> None:
    if not d.treated.any():
        raise ValueError(
            f"no treated observations: no unit is observed at or after its {first_treated!r} period, "
            "so there is no effect to estimate"
        )


def sqrt_var(var: np.ndarray) -> np.ndarray:
    """Square root of variances, clipping the rounding error of exact zeros (NaN stays NaN)."""
    return np.sqrt(np.clip(var, 0.0, None))

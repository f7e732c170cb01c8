"""Scoring estimators against a known truth: MSE, interval coverage and width.

Simulations know each unit's true effect, so every estimator in the book can be judged on the same
three numbers: how far its point estimates are from the truth (mean squared error), how often its
intervals contain the truth (coverage), and what that costs (mean interval width). A fourth,
:func:`top_k_bias`, measures the winner's curse: how much an estimator overstates the units it
ranks at the top.

Labels. A result frame, a truth and strata given as pandas objects are paired by their index
(reordered to the result's order; refused if they describe different units), so a truth in
another unit order cannot be scored against the wrong units. Plain arrays are paired by position.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hbm_lib._validation import align, as_finite_1d, check_same_length

__all__ = ["mse", "coverage", "interval_width", "score", "compare_methods", "top_k_bias"]

_REQUIRED = ("estimate", "lower", "upper")


def mse(estimate: ArrayLike, truth: ArrayLike) -> float:
    """Mean squared error of ``estimate`` against ``truth``.

    Examples
    --------
    >>> mse([1.0, 2.0], [0.0, 0.0])
    2.5
    """
    aligned = align(estimate=estimate, truth=truth)
    est = as_finite_1d(aligned["estimate"], "estimate")
    true = as_finite_1d(aligned["truth"], "truth")
    check_same_length(estimate=est, truth=true)
    return float(np.mean((est - true) ** 2))


def coverage(lower: ArrayLike, upper: ArrayLike, truth: ArrayLike) -> float:
    """Share of intervals ``[lower, upper]`` that contain the truth (ends included).

    Examples
    --------
    >>> coverage([0.0, 0.0], [1.0, 1.0], [0.5, 2.0])
    0.5
    """
    aligned = align(lower=lower, upper=upper, truth=truth)
    lo, hi, true = _check_intervals(aligned["lower"], aligned["upper"], aligned["truth"])
    return float(np.mean((lo <= true) & (true <= hi)))


def interval_width(lower: ArrayLike, upper: ArrayLike) -> float:
    """Mean width ``upper - lower`` of the intervals.

    Examples
    --------
    >>> interval_width([0.0, 1.0], [2.0, 5.0])
    3.0
    """
    aligned = align(lower=lower, upper=upper)
    lo, hi, _ = _check_intervals(aligned["lower"], aligned["upper"], None)
    return float(np.mean(hi - lo))


def score(result: pd.DataFrame, truth: ArrayLike, *, strata: ArrayLike | None = None) -> pd.DataFrame:
    """Score one method's results against the truth, overall and by stratum.

    Parameters
    ----------
    result : pandas.DataFrame
        One row per unit with columns ``estimate``, ``lower`` and ``upper`` (the output of any
        :mod:`hbm_lib.pooling` function, or :func:`hbm_lib.posterior_summary`).
    truth : array-like
        The true value for each unit: a Series is matched to ``result`` by index, an array by
        position.
    strata : array-like, optional
        One stratum label per unit (e.g. from :func:`pandas.cut` on sample size), matched like
        ``truth``. The categories of a categorical keep their order; other labels are sorted.

    Returns
    -------
    pandas.DataFrame
        One row for ``"all"`` and one per stratum, with columns ``stratum``, ``n``, ``mse``,
        ``bias`` (mean of estimate minus truth), ``coverage`` and ``width`` (mean interval width).
    """
    if not isinstance(result, pd.DataFrame):
        raise TypeError(f"result must be a pandas DataFrame; got {type(result).__name__}")
    missing = [c for c in _REQUIRED if c not in result.columns]
    if missing:
        raise ValueError(f"result is missing column(s) {missing}; it needs {list(_REQUIRED)}")
    aligned = align(result=result, truth=truth, strata=strata)
    truth, strata = aligned["truth"], aligned["strata"]
    est = as_finite_1d(result["estimate"], "result['estimate']")
    lo, hi, true = _check_intervals(result["lower"], result["upper"], truth)
    check_same_length(result=est, truth=true)
    labels = _strata_labels(strata, len(true))

    rows = []
    for name, mask in [("all", np.ones(len(true), dtype=bool))] + [(s, labels == s) for s in _levels(strata, labels)]:
        if not mask.any():
            continue
        err = est[mask] - true[mask]
        rows.append(
            {
                "stratum": name,
                "n": int(mask.sum()),
                "mse": float(np.mean(err**2)),
                "bias": float(np.mean(err)),
                "coverage": float(np.mean((lo[mask] <= true[mask]) & (true[mask] <= hi[mask]))),
                "width": float(np.mean(hi[mask] - lo[mask])),
            }
        )
    return pd.DataFrame(rows)


def compare_methods(
    results: Mapping[str, pd.DataFrame], truth: ArrayLike, *, strata: ArrayLike | None = None
) -> pd.DataFrame:
    """One table scoring several methods against the same truth.

    Parameters
    ----------
    results : mapping of str to pandas.DataFrame
        Method name to its results (see :func:`score`), one row per unit each. Frames are matched
        to one another by index (so they must describe the same units, in any order; the first
        frame's order is used), as are ``truth`` and ``strata`` when they are pandas objects.
    truth : array-like
        The true value for each unit.
    strata : array-like, optional
        One stratum label per unit; the table then has a row per method and stratum as well as
        the overall ``"all"`` row.

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``method``, ``stratum``, ``n``, ``mse``, ``bias``, ``coverage``,
        ``width``, methods in the order given.

    Examples
    --------
    >>> from hbm_lib.pooling import no_pooling, complete_pooling
    >>> y, se, truth = [0.0, 2.0], [1.0, 1.0], [0.5, 1.5]
    >>> table = compare_methods({"none": no_pooling(y, se), "complete": complete_pooling(y, se)}, truth)
    >>> table[["method", "mse"]]
         method   mse
    0      none  0.25
    1  complete  0.25
    """
    if not isinstance(results, Mapping) or len(results) == 0:
        raise ValueError("results must be a non-empty mapping of method name to results DataFrame")
    names = list(results)
    for name in names:
        if not isinstance(results[name], pd.DataFrame):
            raise TypeError(f"results[{name!r}] must be a pandas DataFrame; got {type(results[name]).__name__}")
    first = names[0]
    frames = []
    for name in names:
        # every frame against the first, so that all methods are scored on the same units
        result = align(**{f"results[{first!r}]": results[first], f"results[{name!r}]": results[name]})[f"results[{name!r}]"]
        table = score(result, truth, strata=strata)
        table.insert(0, "method", name)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def top_k_bias(estimate: ArrayLike, truth: ArrayLike, k: int) -> float:
    """The winner's curse: mean of ``estimate - truth`` over the ``k`` units with the largest estimates.

    Picking the units whose estimates are largest also picks the ones whose noise happened to
    push them up, so an unbiased estimator overstates the winners it selects. A positive value is
    how much the ``k`` "best" units' estimates overstate their true effects on average; a posterior
    mean under a correct prior has none (its error is uncorrelated with anything it conditions
    on, the ranking included). Ties at the cut are broken by position.

    Parameters
    ----------
    estimate, truth : array-like
        One estimate and one true value per unit; pandas inputs are paired by index.
    k : int
        How many top units to average over, ``1 <= k <= n``.

    Returns
    -------
    float

    Examples
    --------
    >>> top_k_bias([3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 2.5, 0.0], k=2)  # units 0 and 2: (2 - 0.5) / 2
    0.75
    """
    aligned = align(estimate=estimate, truth=truth)
    est = as_finite_1d(aligned["estimate"], "estimate")
    true = as_finite_1d(aligned["truth"], "truth")
    n = check_same_length(estimate=est, truth=true)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer between 1 and the number of units ({n}); got {k!r}")
    top = np.argsort(-est, kind="stable")[: int(k)]
    return float(np.mean(est[top] - true[top]))


def _check_intervals(lower, upper, truth):
    lo = as_finite_1d(lower, "lower")
    hi = as_finite_1d(upper, "upper")
    arrays = {"lower": lo, "upper": hi}
    true = None
    if truth is not None:
        true = as_finite_1d(truth, "truth")
        arrays["truth"] = true
    check_same_length(**arrays)
    bad = lo > hi
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"lower must not exceed upper; got lower={lo[i]:g} > upper={hi[i]:g} at position {i}")
    return lo, hi, true


def _strata_labels(strata, n: int) -> np.ndarray | None:
    if strata is None:
        return None
    labels = pd.Series(strata)
    if len(labels) != n:
        raise ValueError(f"strata must have one label per unit: expected {n}, got {len(labels)}")
    if labels.isna().any():
        i = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise ValueError(f"strata has a missing label at position {i} (a value outside the bins of pandas.cut?)")
    return labels.to_numpy()


def _levels(strata, labels) -> list:
    if labels is None:
        return []
    if isinstance(strata, (pd.Categorical, pd.Series)) and isinstance(getattr(strata, "dtype", None), pd.CategoricalDtype):
        return list(strata.dtype.categories)
    return sorted(set(labels.tolist()), key=str)

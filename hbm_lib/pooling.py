"""No pooling, complete pooling and empirical-Bayes partial pooling of unit estimates.

Each unit ``i`` reports an estimate ``y[i]`` of its true effect ``theta[i]`` with a known standard
error ``se[i]``. The three estimators here differ in how much they let units borrow from one another:

* :func:`no_pooling` keeps every ``y[i]`` as it is;
* :func:`complete_pooling` replaces every unit by the precision-weighted mean of its group;
* :func:`partial_pooling` takes the normal-normal model ``y[i] ~ N(theta[i], se[i])``,
  ``theta[i] ~ N(mu[g[i]], tau)``, plugs in an estimate of ``tau`` (empirical Bayes), and returns the
  posterior mean ``w[i] * y[i] + (1 - w[i]) * mu[g[i]]`` with shrinkage weight
  ``w = (1/se^2) / (1/se^2 + 1/tau^2)``.

All three return a DataFrame indexed by unit with the columns ``estimate``, ``sd``, ``lower`` and
``upper`` (a central normal interval), so that they can be compared with
:func:`hbm_lib.compare_methods`.

Two more functions build on them:

* :func:`hbm_lib.robust_eb_intervals` (in :mod:`hbm_lib.robust_eb`) keeps the empirical-Bayes
  estimate but replaces its normal interval by the robust EBCI of Armstrong, Kolesár and
  Plagborg-Møller (2022), whose average coverage holds for any distribution of the true effects
  with the estimated second and fourth moments, normal or not;
* :func:`pooling_methods` runs the book's estimators side by side on one set of unit estimates:
  no pooling, complete pooling, empirical Bayes, full Bayes (the hierarchical normal model of
  :mod:`hbm_lib.models`, by default its exact posterior) and, on request, the robust EBCI.

Labels. ``y``, ``se``, ``groups`` and ``units`` may be plain arrays (paired by position) or pandas
Series (paired by their index: a Series of standard errors in another unit order is reordered to
match ``y``, and one with other units is refused). The result is indexed by ``units`` if given,
else by the index of ``y`` (keeping its name), else by ``0..n-1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hbm_lib._validation import (
    align,
    as_finite_1d,
    as_labels,
    as_positive_1d,
    check_choice,
    check_level,
    check_same_length,
    unit_labels,
)

__all__ = [
    "no_pooling",
    "complete_pooling",
    "partial_pooling",
    "estimate_tau",
    "shrinkage_weight",
    "pooling_methods",
    "POOLING_METHODS",
]

TauMethod = Literal["mle", "reml", "moments"]
_TAU_METHODS = ("mle", "reml", "moments")


def shrinkage_weight(se: ArrayLike, tau: float) -> np.ndarray:
    """Weight a unit's own estimate gets under partial pooling.

    ``w = (1/se^2) / (1/se^2 + 1/tau^2) = tau^2 / (tau^2 + se^2)``: the share of the unit's
    posterior precision that comes from its own data.

    Parameters
    ----------
    se : array-like
        Standard errors of the unit estimates, all positive.
    tau : float
        Between-unit standard deviation, ``0 <= tau <= inf``. ``tau = 0`` gives weight 0
        (complete pooling); ``tau = inf`` gives weight 1 (no pooling).

    Returns
    -------
    numpy.ndarray or pandas.Series
        One weight in ``[0, 1]`` per unit; a Series with the index of ``se`` if ``se`` is one.

    Examples
    --------
    >>> shrinkage_weight([1.0, 2.0], tau=2.0)
    array([0.8, 0.5])
    """
    se_arr = as_positive_1d(se, "se")
    tau = _check_tau(tau)
    if np.isinf(tau):
        weight = np.ones_like(se_arr)
    else:
        # 1 / (1 + (se/tau)^2): exact at both extremes; a ratio that overflows to inf gives weight 0
        with np.errstate(over="ignore", divide="ignore"):
            weight = 1.0 / (1.0 + (se_arr / tau) ** 2)
    if isinstance(se, pd.Series):
        return pd.Series(weight, index=se.index, name="weight")
    return weight


def no_pooling(
    y: ArrayLike,
    se: ArrayLike,
    *,
    units: ArrayLike | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Each unit on its own: the estimate is ``y`` and its sd is ``se``.

    Parameters
    ----------
    y : array-like
        Unit estimates. A pandas Series lends its index as unit labels.
    se : array-like
        Their standard errors, all positive.
    units : array-like, optional
        Unit labels (default: the index of ``y`` if it is a Series, else ``0..n-1``).
    level : float, default 0.95
        Coverage of the central normal interval.

    Returns
    -------
    pandas.DataFrame
        Indexed by unit, with columns ``estimate``, ``sd``, ``lower``, ``upper``.

    Examples
    --------
    >>> no_pooling([28.0, 8.0], [15.0, 10.0]).round(1)
          estimate    sd  lower  upper
    unit
    0         28.0  15.0   -1.4   57.4
    1          8.0  10.0  -11.6   27.6
    """
    y_arr, se_arr, labels, _ = _check_inputs(y, se, units, None)
    level = check_level(level)
    return _frame(labels, y_arr, se_arr, level)


def complete_pooling(
    y: ArrayLike,
    se: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    units: ArrayLike | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Every unit gets the precision-weighted mean of its group (or of all units).

    The pooled mean is ``sum(y / se^2) / sum(1 / se^2)`` with sd ``sqrt(1 / sum(1 / se^2))``:
    the estimate of a common effect, right when the units truly share one.

    Parameters
    ----------
    y, se : array-like
        Unit estimates and their positive standard errors.
    groups : array-like, optional
        One group label per unit; each unit is then pooled with its own group only.
    units : array-like, optional
        Unit labels.
    level : float, default 0.95
        Coverage of the central normal interval.

    Returns
    -------
    pandas.DataFrame
        Indexed by unit, with ``group`` (if given), ``estimate``, ``sd``, ``lower``, ``upper``.

    Examples
    --------
    >>> complete_pooling([1.0, 3.0], [1.0, 1.0])["estimate"].tolist()
    [2.0, 2.0]
    """
    y_arr, se_arr, labels, groups = _check_inputs(y, se, units, groups)
    level = check_level(level)
    codes, categories = _group_codes(groups, len(y_arr))
    est, sd, _, _ = _pool(y_arr, se_arr, codes, tau=0.0)
    out = _frame(labels, est, sd, level)
    _insert_groups(out, codes, categories, groups)
    return out


def estimate_tau(
    y: ArrayLike,
    se: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    method: TauMethod = "mle",
) -> float:
    """Estimate the between-unit sd ``tau`` of the normal-normal model from the data.

    Under ``y[i] ~ N(mu[g[i]], sqrt(se[i]^2 + tau^2))`` (``theta`` integrated out):

    * ``"mle"`` maximises the marginal likelihood, with each group mean profiled out;
    * ``"reml"`` maximises the restricted likelihood, which corrects the downward bias of the MLE
      that comes from estimating the means;
    * ``"moments"`` is the DerSimonian-Laird method-of-moments estimator (with one mean per group).

    All three are truncated at zero: when the spread of ``y`` is no more than the standard errors
    explain, the estimate is exactly ``0`` (complete pooling). The likelihood-based estimates are
    found on a grid refined by Brent's method, so a maximum at the boundary ``tau = 0`` is found too.

    Parameters
    ----------
    y, se : array-like
        Unit estimates and their positive standard errors; at least two units.
    groups : array-like, optional
        One group label per unit; each group gets its own mean, ``tau`` is shared.
    method : {"mle", "reml", "moments"}, default "mle"
        Estimation method, see above.

    Returns
    -------
    float
        The estimate of ``tau``, ``>= 0``.

    Examples
    --------
    >>> from hbm_lib.datasets import eight_schools
    >>> d = eight_schools()
    >>> estimate_tau(d["y"], d["sigma"])
    0.0
    """
    y_arr, se_arr, _, groups = _check_inputs(y, se, None, groups, min_length=2)
    codes, _ = _group_codes(groups, len(y_arr))
    return _estimate_tau(y_arr, se_arr, codes, _check_method(method))


def partial_pooling(
    y: ArrayLike,
    se: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    tau: float | None = None,
    method: TauMethod = "mle",
    units: ArrayLike | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Empirical-Bayes partial pooling under the normal-normal model.

    With ``tau`` known (given, or estimated by :func:`estimate_tau`), each unit's estimate is the
    posterior mean ``w * y + (1 - w) * mu_hat`` with ``w = shrinkage_weight(se, tau)`` and
    ``mu_hat`` the mean of its group weighted by ``1 / (se^2 + tau^2)``. Its sd is the posterior sd
    of ``theta`` given ``tau`` under a flat prior on the means,
    ``sqrt(w * se^2 + (1 - w)^2 * var(mu_hat))``: it accounts for estimating the means but *not*
    for estimating ``tau``, which is why these intervals are too narrow when ``tau`` is uncertain
    (full Bayes, in :mod:`hbm_lib.models`, averages over ``tau`` instead).

    Parameters
    ----------
    y, se : array-like
        Unit estimates and their positive standard errors.
    groups : array-like, optional
        One group label per unit: each unit is pulled towards its own group's mean.
    tau : float, optional
        Between-unit sd to use, ``>= 0`` (``numpy.inf`` gives no pooling). Estimated from the data
        with ``method`` when omitted.
    method : {"mle", "reml", "moments"}, default "mle"
        How to estimate ``tau`` when it is not given.
    units : array-like, optional
        Unit labels.
    level : float, default 0.95
        Coverage of the central normal interval.

    Returns
    -------
    pandas.DataFrame
        Indexed by unit, with ``group`` (if given), ``estimate``, ``sd``, ``lower``, ``upper``,
        ``weight`` (the shrinkage weight ``w``) and ``pooled_mean`` (the mean the unit is pulled
        towards). The ``tau`` used is :func:`estimate_tau` with the same ``groups`` and
        ``method`` (or the one given): to report it, compute it once and pass it in.

    Examples
    --------
    >>> tau = estimate_tau([0.0, 4.0, 1.0], [1.0, 1.0, 1.0])
    >>> round(tau, 3)
    1.374
    >>> partial_pooling([0.0, 4.0, 1.0], [1.0, 1.0, 1.0], tau=tau)["weight"].round(3).tolist()
    [0.654, 0.654, 0.654]
    >>> out = partial_pooling([0.0, 4.0], [1.0, 1.0], tau=1.0)
    >>> out[["estimate", "weight", "pooled_mean"]]
          estimate  weight  pooled_mean
    unit
    0          1.0     0.5          2.0
    1          3.0     0.5          2.0
    """
    y_arr, se_arr, labels, groups = _check_inputs(y, se, units, groups)
    level = check_level(level)
    codes, categories = _group_codes(groups, len(y_arr))
    method = _check_method(method)
    if tau is None:
        if len(y_arr) < 2:
            raise ValueError("y needs at least 2 units to estimate tau; pass tau= to pool a single unit")
        tau_value = _estimate_tau(y_arr, se_arr, codes, method)
    else:
        tau_value = _check_tau(tau)
    est, sd, weight, pooled_mean = _pool(y_arr, se_arr, codes, tau_value)
    out = _frame(labels, est, sd, level)
    out["weight"] = weight
    out["pooled_mean"] = pooled_mean
    _insert_groups(out, codes, categories, groups)
    return out


#: The estimators :func:`pooling_methods` can run, in the order it returns them.
POOLING_METHODS = ("no pooling", "complete pooling", "empirical Bayes", "full Bayes", "robust EBCI")


def pooling_methods(
    y: ArrayLike,
    se: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    units: ArrayLike | None = None,
    level: float = 0.95,
    methods: Sequence[str] = POOLING_METHODS[:4],
    interval: Literal["draws", "normal"] = "draws",
    model_options: Mapping[str, Any] | None = None,
    fit_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, pd.DataFrame], Any]:
    """The book's pooling estimators side by side on one set of unit estimates.

    Runs, among ``methods``: :func:`no_pooling`, :func:`complete_pooling`, :func:`partial_pooling`
    (``"empirical Bayes"``, ``tau`` by maximum likelihood), ``"full Bayes"``
    (:func:`hbm_lib.hierarchical_normal` fitted by :func:`hbm_lib.fit`, by default its exact
    posterior, ``method="grid"``) and :func:`robust_eb_intervals` (``"robust EBCI"``, with the
    kurtosis estimated), each with ``groups`` when given. The results are ready for
    :func:`hbm_lib.compare_methods`.

    Parameters
    ----------
    y, se : array-like
        Unit estimates and their positive standard errors.
    groups, units : array-like, optional
        Group and unit labels, as in the other functions of this module.
    level : float, default 0.95
        Coverage of every interval.
    methods : sequence of str, default the first four of ``POOLING_METHODS``
        Which estimators to run, from ``"no pooling"``, ``"complete pooling"``,
        ``"empirical Bayes"``, ``"full Bayes"`` and ``"robust EBCI"``.
    interval : {"draws", "normal"}, default "draws"
        Full Bayes's interval: equal-tailed from the posterior draws
        (:func:`hbm_lib.posterior_summary`), or ``mean +/- z sd`` from the exact posterior mean and
        sd of each ``theta`` (a grid fit only; no draws of ``theta`` are needed, so with
        ``fit_options={"draws": 1, "chains": 1}`` it scales to millions of units). The posterior
        of ``theta`` is a scale mixture of normals, close to normal when the standard deviations
        are well determined.
    model_options : mapping, optional
        Keyword arguments of :func:`hbm_lib.hierarchical_normal` (priors, ``unit_dim``, ...).
    fit_options : mapping, optional
        Keyword arguments of :func:`hbm_lib.fit`; ``method="grid"`` and
        ``keep_log_likelihood=False`` unless given.

    Returns
    -------
    results : dict of str to pandas.DataFrame
        One frame per method run, in the order of ``POOLING_METHODS``, indexed by unit with
        ``estimate``, ``sd``, ``lower`` and ``upper``.
    idata : xarray.DataTree or None
        The full-Bayes fit (None without ``"full Bayes"``).

    Examples
    --------
    >>> from hbm_lib.datasets import eight_schools
    >>> d = eight_schools()
    >>> results, idata = pooling_methods(d["y"], d["sigma"], units=d["school"], fit_options={"draws": 250})
    >>> list(results)
    ['no pooling', 'complete pooling', 'empirical Bayes', 'full Bayes']
    >>> results["full Bayes"].index.tolist() == d["school"].tolist()
    True
    """
    level = check_level(level)
    interval = check_choice(interval, "interval", ("draws", "normal"))
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ValueError(f"methods must be a non-empty sequence of names from {POOLING_METHODS}; got {methods!r}")
    unknown = [m for m in methods if m not in POOLING_METHODS]
    if unknown:
        raise ValueError(f"methods: {unknown[0]!r} is not one of {POOLING_METHODS}")
    fit_kwargs = {"method": "grid", "keep_log_likelihood": False, **dict(fit_options or {})}
    if interval == "normal" and fit_kwargs["method"] != "grid":
        raise ValueError("interval='normal' uses the exact posterior moments: it needs fit_options method='grid'")
    from hbm_lib.robust_eb import robust_eb_intervals  # robust_eb imports this module's helpers

    run = {
        "no pooling": lambda: no_pooling(y, se, units=units, level=level),
        "complete pooling": lambda: complete_pooling(y, se, groups=groups, units=units, level=level),
        "empirical Bayes": lambda: partial_pooling(y, se, groups=groups, units=units, level=level),
        "robust EBCI": lambda: robust_eb_intervals(y, se, groups=groups, units=units, level=level),
    }
    results, idata = {}, None
    for name in (m for m in POOLING_METHODS if m in methods):
        if name == "full Bayes":
            results[name], idata = _full_bayes(y, se, groups, units, level, interval, model_options, fit_kwargs)
        else:
            results[name] = run[name]()
    return results, idata


def _full_bayes(y, se, groups, units, level, interval, model_options, fit_kwargs):
    from hbm_lib.inference import fit, posterior_summary  # here: PyMC is imported only when needed
    from hbm_lib.models import hierarchical_normal

    model = hierarchical_normal(y, se, groups=groups, units=units, **dict(model_options or {}))
    idata = fit(model, **fit_kwargs)
    if interval == "draws":
        return posterior_summary(idata, "theta", prob=level), idata
    exact = idata["exact_moments"]
    mean, sd = exact["theta_mean"].to_series(), exact["theta_sd"].to_numpy()
    return _frame(pd.Index(mean.index, name=mean.index.name), mean.to_numpy(), sd, level), idata


# --------------------------------------------------------------------------------------------
# internals


def _check_inputs(y, se, units, groups, *, min_length: int = 1):
    """The checked arrays, unit labels and groups, all in the order of ``y`` (aligned by label)."""
    aligned = align(y=y, se=se, units=units, groups=groups)
    y, se, units, groups = aligned["y"], aligned["se"], aligned["units"], aligned["groups"]
    y_arr = as_finite_1d(y, "y", min_length=min_length)
    se_arr = as_positive_1d(se, "se", min_length=min_length)
    n = check_same_length(y=y_arr, se=se_arr)
    labels = unit_labels(units, y if isinstance(y, pd.Series) else se, n)
    return y_arr, se_arr, labels, groups


def _check_tau(tau) -> float:
    try:
        tau = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"tau must be a number >= 0; got {tau!r}") from None
    if np.isnan(tau) or tau < 0:
        raise ValueError(f"tau must be >= 0 (numpy.inf for no pooling); got {tau}")
    return tau


def _check_method(method) -> str:
    return check_choice(method, "method", _TAU_METHODS)


def _group_codes(groups, n: int) -> tuple[np.ndarray, pd.Index]:
    if groups is None:
        return np.zeros(n, dtype=np.int64), pd.Index(["all"], name="group")
    return as_labels(groups, n, "groups")


def _insert_groups(out: pd.DataFrame, codes, categories, groups) -> None:
    if groups is not None:
        out.insert(0, "group", categories.to_numpy()[codes])


def _frame(labels: pd.Index, est: np.ndarray, sd: np.ndarray, level: float) -> pd.DataFrame:
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return pd.DataFrame(
        {"estimate": est, "sd": sd, "lower": est - z * sd, "upper": est + z * sd},
        index=labels,
    )


def _group_sums(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=codes.max() + 1)


def _pool(y, se, codes, tau: float):
    """Posterior mean and sd of theta given tau (flat prior on the group means)."""
    if np.isinf(tau):
        return y.copy(), se.copy(), np.ones_like(y), _group_sums(y, codes)[codes] / np.bincount(codes)[codes]
    precision = 1.0 / (se**2 + tau**2)
    sum_precision = _group_sums(precision, codes)
    mu_hat = _group_sums(precision * y, codes) / sum_precision
    var_mu = 1.0 / sum_precision
    w = shrinkage_weight(se, tau)
    pooled_mean = mu_hat[codes]
    est = w * y + (1.0 - w) * pooled_mean
    sd = np.sqrt(w * se**2 + (1.0 - w) ** 2 * var_mu[codes])
    return est, sd, w, pooled_mean


def _neg2_loglik(tau: float, y, se, codes, reml: bool) -> float:
    v = se**2 + tau**2
    precision = 1.0 / v
    sum_precision = _group_sums(precision, codes)
    mu_hat = _group_sums(precision * y, codes) / sum_precision
    value = np.sum(np.log(v)) + np.sum((y - mu_hat[codes]) ** 2 * precision)
    if reml:
        value += np.sum(np.log(sum_precision))
    return float(value)


def _neg2_loglik_grid(taus: np.ndarray, y, se, codes, reml: bool) -> np.ndarray:
    """:func:`_neg2_loglik` at every value of ``taus`` at once, in blocks of about 4 million cells."""
    order = np.argsort(codes, kind="stable")
    y, se, codes = y[order], se[order], codes[order]
    starts = np.flatnonzero(np.r_[True, np.diff(codes) != 0])
    out = np.empty(len(taus))
    block = max(1, (1 << 22) // len(y))
    for first in range(0, len(taus), block):
        rows = slice(first, first + block)
        v = se**2 + taus[rows, None] ** 2
        precision = 1.0 / v
        sum_precision = np.add.reduceat(precision, starts, axis=1)
        mu_hat = np.add.reduceat(precision * y, starts, axis=1) / sum_precision
        value = np.log(v).sum(axis=1) + ((y - mu_hat[:, codes]) ** 2 * precision).sum(axis=1)
        if reml:
            value += np.log(sum_precision).sum(axis=1)
        out[rows] = value
    return out


def _estimate_tau(y, se, codes, method: str) -> float:
    n_groups = codes.max() + 1
    if len(y) <= n_groups:
        raise ValueError(
            "groups: every unit is its own group, so nothing is left to estimate tau from; "
            "use fewer groups or pass tau="
        )
    if method == "moments":
        w = 1.0 / se**2
        sum_w = _group_sums(w, codes)
        mu_fixed = _group_sums(w * y, codes) / sum_w
        q = np.sum(w * (y - mu_fixed[codes]) ** 2)
        c = np.sum(w) - np.sum(_group_sums(w**2, codes) / sum_w)
        return float(np.sqrt(max(0.0, (q - (len(y) - n_groups)) / c)))

    reml = method == "reml"
    objective = lambda t: _neg2_loglik(t, y, se, codes, reml)  # noqa: E731
    spread = float(np.ptp(y))
    upper = 2.0 * spread + float(se.max())
    for _ in range(20):  # widen the search until the optimum is inside it
        grid = upper * np.linspace(0.0, 1.0, 201) ** 2  # denser near tau = 0
        values = _neg2_loglik_grid(grid, y, se, codes, reml)
        k = int(np.argmin(values))
        if k < len(grid) - 1:
            break
        upper *= 4.0
    else:  # pragma: no cover - the likelihood falls off like -n log(tau), so this cannot happen
        raise RuntimeError("tau estimate diverged")
    score = lambda t: _score(t**2, y, se, codes, reml)  # noqa: E731
    if k <= 1 and score(0.0) >= 0:
        # Karush-Kuhn-Tucker: the likelihood falls as tau^2 leaves 0, so the maximum is tau = 0 exactly
        return 0.0
    from scipy import optimize  # here, not at import: pooling with a given tau needs no SciPy

    lo, hi = grid[max(k - 1, 0)], grid[k + 1]
    if score(lo) < 0 < score(hi):
        # solve the score equation: far better conditioned than minimising a flat objective
        return float(optimize.brentq(score, lo, hi, xtol=1e-14 * hi, rtol=1e-12))
    result = optimize.minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12 * upper})
    return float(result.x)


def _score(tau2: float, y, se, codes, reml: bool) -> float:
    """Derivative of -2 log-likelihood with respect to tau^2 (group means profiled out)."""
    precision = 1.0 / (se**2 + tau2)
    sum_precision = _group_sums(precision, codes)
    mu_hat = _group_sums(precision * y, codes) / sum_precision
    slope = np.sum(precision) - np.sum(((y - mu_hat[codes]) * precision) ** 2)
    if reml:
        slope -= np.sum(_group_sums(precision**2, codes) / sum_precision)
    return float(slope)

"""Staggered adoption: the imputation estimator and two-way fixed effects.

Units (creators) adopt a treatment at different periods and stay treated; some never adopt. The
untreated outcome follows the two-way fixed-effects model ``Y_it(0) = alpha_i + lambda_t + e_it``
(parallel trends), and the effect of the treatment on unit ``i`` in period ``t`` is
``tau_it = Y_it - Y_it(0)``, which may differ across units and grow with time since adoption.

* :func:`imputation_estimator` is the estimator of Borusyak, Jaravel and Spiess (2024): fit the
  fixed effects on the untreated observations only, impute ``Y_it(0)`` for every treated
  observation, and average the differences. It is unbiased under parallel trends and no
  anticipation, whatever the pattern of effects.
* :func:`two_way_fixed_effects` is the regression that was standard before: OLS of the outcome on
  unit and period effects and a treatment dummy (or event-time dummies) on all observations. With
  heterogeneous or dynamic effects it compares newly treated units with already-treated ones and
  can be badly biased; the chapter uses it as the comparator.

Both take a long panel: one row per unit and period, with the period at which the unit is first
treated (missing for never-treated units) repeated on each of its rows. Panels may be unbalanced.
The fixed effects are fitted without building dummy matrices: the normal equations of the two-way
model have an arrow structure (a diagonal unit block, a period block and a sparse unit-by-period
count matrix coupling them), so the unit effects are eliminated exactly and only a dense
periods-by-periods system is solved, in ``O(N T + T^3)`` operations for ``N`` units and ``T``
periods.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import linalg, sparse, stats
from scipy.sparse import csgraph

from hbm_lib._validation import check_level

__all__ = ["ImputationResult", "imputation_estimator", "two_way_fixed_effects"]

Variance = Literal["unit", "pooled"]
_VARIANCES = ("unit", "pooled")


@dataclass(frozen=True, eq=False)
class ImputationResult:
    """What :func:`imputation_estimator` returns.

    Attributes
    ----------
    att : float
        Mean of ``tau_it`` over all treated observations.
    att_se : float
        Its standard error (see :func:`imputation_estimator` for what it covers).
    event_study : pandas.DataFrame
        One row per horizon ``h = t - first_treated``, with columns ``horizon`` (int), ``estimate``,
        ``se``, ``lower``, ``upper`` and ``n_obs``. Rows with ``h >= 0`` average ``tau_it`` over the
        treated observations at that horizon (``0`` is the adoption period); rows with ``h < 0`` are
        the pre-trend placebos (imputed "effects" in untreated periods, ~0 under parallel trends and
        no anticipation).
    units : pandas.DataFrame
        One row per treated unit, indexed by unit label (index named after the ``unit`` column),
        with ``first_treated``, ``n_pre`` (untreated observations), ``n_post`` (treated
        observations), ``estimate`` (mean ``tau_it`` over the unit's treated observations), ``se``,
        ``lower`` and ``upper``.
    observations : pandas.DataFrame
        One row per treated observation, keeping the panel's index, with the unit and time columns
        (under the panel's names), ``horizon``, the outcome column, ``y0_hat`` (imputed untreated
        outcome) and ``tau`` (outcome minus ``y0_hat``).
    unit_effects, time_effects : pandas.Series
        The fitted ``alpha_i`` (every unit) and ``lambda_t`` (every period, sorted), normalised so that
        the time effect of the first period is ``0``: ``alpha_i`` is unit ``i``'s untreated outcome in
        the first period and ``lambda_t`` the common change since then.
    residual_sd : float
        Pooled standard deviation of the stage-1 residuals (residual sum of squares over
        ``n_untreated - n_units - n_periods + 1`` degrees of freedom).
    level : float
        Coverage of the intervals.
    """

    att: float
    att_se: float
    event_study: pd.DataFrame
    units: pd.DataFrame
    observations: pd.DataFrame
    unit_effects: pd.Series
    time_effects: pd.Series
    residual_sd: float
    level: float

    def __repr__(self) -> str:
        return (
            f"ImputationResult(att={self.att:.4g}, att_se={self.att_se:.4g}, "
            f"treated_units={len(self.units)}, treated_observations={len(self.observations)}, "
            f"horizons={self.event_study['horizon'].tolist()}, level={self.level})"
        )


def imputation_estimator(
    panel: pd.DataFrame,
    *,
    unit: str = "creator",
    time: str = "period",
    outcome: str = "outcome",
    first_treated: str = "first_treated",
    pre_periods: int = 5,
    level: float = 0.95,
    variance: Variance = "unit",
) -> ImputationResult:
    """Imputation estimator of staggered-adoption effects (Borusyak, Jaravel and Spiess, 2024).

    **Stage 1.** Fit ``Y_it = alpha_i + lambda_t + e_it`` by least squares on the *untreated*
    observations only: never-treated units, and treated units before ``first_treated``.
    **Stage 2.** Impute ``Y_hat_it(0) = alpha_i + lambda_t`` for every treated observation
    (``t >= first_treated``) and set ``tau_it = Y_it - Y_hat_it(0)``. The ATT is the mean of
    ``tau_it`` over all treated observations, the event-study estimate at horizon ``h >= 0`` the mean
    over treated observations with ``t - first_treated = h``, and a unit's estimate the mean over its
    own treated observations. Under parallel trends and no anticipation these are unbiased for the
    corresponding averages of the realised effects, however the effects vary across units and time.

    **Pre-trend placebos** (horizons ``-pre_periods .. -1``). A second stage-1 fit leaves out the
    untreated observations of eventually-treated units (``first_treated`` not missing) at horizons
    ``-pre_periods .. -1``, imputes them from the remaining untreated observations, and reports the
    mean imputed "effect" per horizon. Under parallel trends and no anticipation these are ~0; they
    are a check only -- the main estimates use *all* untreated observations. A unit that would lose
    all its untreated observations in the placebo fit is left out of the placebos, as are held-out
    observations in periods with no remaining untreated observation. If the remaining observations
    do not connect all units and periods, the placebos are skipped with a warning.
    ``pre_periods=0`` disables them.

    **Standard errors.** Every estimate is linear in the outcomes, ``sum_it v_it Y_it``, with
    ``v = w`` on the treated observations it averages (``w`` its averaging weights) and
    ``v = -Z0 (Z0'Z0)^- Z1' w`` on the untreated ones (``Z0``, ``Z1``: the fixed-effects design on
    untreated and treated observations). Treating the effects ``tau_it`` as fixed and the errors as
    independent with variance ``sigma_i^2`` for unit ``i``, the variance is ``sum_it v_it^2
    sigma_i^2``, computed exactly for the ATT, every horizon and every unit (``O(N T^2)`` for the
    units, with ``N`` units and ``T`` periods). ``sigma_i^2`` is estimated by

    * ``variance="unit"``: the unit's own stage-1 residual sum of squares divided by ``n_i - h_i``,
      with ``n_i`` its untreated observations and ``h_i`` the sum of their leverages (which makes it
      unbiased when all units share one variance, and approximately so otherwise); units with fewer
      than 3 untreated observations get the pooled variance instead;
    * ``variance="pooled"``: the pooled residual variance, ``residual_sd**2``, for every unit.

    The placebo horizons use the same formula with the placebo fit in place of the main one and the
    variances estimated in the main fit.

    What the standard errors cover: the estimand is the *sample* average of the realised effects of
    the units' own treated periods, so effect heterogeneity does not enter (as a standard error for a
    population-average effect they would be too small). They are exact when the errors are
    independent with the assumed variances, but **not** robust to serial correlation within unit:
    with autocorrelated errors they are too small (anti-conservative). They assume a unit's error
    variance is the same before and after treatment. With ``variance="unit"`` the unit variances are
    estimated from few residual degrees of freedom, so the normal intervals of individual units
    cover somewhat less than ``level`` (like using ``z`` in place of a ``t`` quantile); averages over
    many observations are hardly affected. ``variance="pooled"`` is right only if units share one
    error variance. Intervals are ``estimate -/+ z * se`` with ``z`` the normal quantile for
    ``level``.

    Parameters
    ----------
    panel : pandas.DataFrame
        Long panel, one row per unit and period (rows may be missing: unbalanced panels are fine).
    unit, time, outcome, first_treated : str
        Column names. ``time`` must hold integer-like numbers (``3`` or ``3.0``, not ``3.5`` or
        ``"3"``); horizons are measured in its units. ``first_treated`` is the first treated period,
        constant within unit, integer-like, and missing (NaN, ``pd.NA`` or ``None``) for
        never-treated units; it may lie after the last observed period (the unit is then untreated
        throughout).
    pre_periods : int, default 5
        Number of pre-adoption horizons to report as placebos (``0`` for none).
    level : float, default 0.95
        Coverage of the central normal intervals.
    variance : {"unit", "pooled"}, default "unit"
        Error variance per unit or common to all, see above.

    Returns
    -------
    ImputationResult
        ATT, event study, per-unit effects, per-observation imputations and the fitted fixed
        effects.

    Raises
    ------
    ValueError
        If a column is missing, an outcome is not finite, periods or ``first_treated`` are not
        integer-like, a (unit, period) pair appears twice, ``first_treated`` varies within a unit,
        there are no treated observations, a treated unit has no untreated observation, a period
        with treated observations has no untreated one, or the untreated observations do not
        connect all units and periods (so the fixed effects are not identified).

    References
    ----------
    Borusyak, K., Jaravel, X. and Spiess, J. (2024). Revisiting event-study designs: robust and
    efficient estimation. *Review of Economic Studies* 91(6), 3253-3285.

    Examples
    --------
    Two creators, one adopting in period 2 with an effect of 3, one never adopting; no noise:

    >>> import pandas as pd
    >>> panel = pd.DataFrame({
    ...     "creator": ["a"] * 4 + ["b"] * 4,
    ...     "period": [0, 1, 2, 3] * 2,
    ...     "outcome": [1.0, 2.0, 6.0, 7.0, 5.0, 6.0, 7.0, 8.0],
    ...     "first_treated": [2] * 4 + [None] * 4,
    ... })
    >>> result = imputation_estimator(panel, pre_periods=0)
    >>> round(result.att, 10)
    3.0
    >>> result.event_study[["horizon", "estimate", "n_obs"]].round(10)
       horizon  estimate  n_obs
    0        0       3.0      1
    1        1       3.0      1
    >>> result.time_effects.round(10).tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    level = check_level(level)
    pre_periods = _check_count(pre_periods, "pre_periods")
    if variance not in _VARIANCES:
        raise ValueError(f"variance must be one of {_VARIANCES}; got {variance!r}")
    d = _prepare(panel, unit, time, outcome, first_treated)
    treated = d.treated
    untreated = ~treated
    N, T = d.n_units, d.n_periods

    if not treated.any():
        raise ValueError(
            f"no treated observations: no unit is observed at or after its {first_treated!r} period, "
            "so there is no effect to estimate"
        )
    n_pre = np.bincount(d.u[untreated], minlength=N)
    n_post = np.bincount(d.u[treated], minlength=N)
    lonely = np.flatnonzero((n_post > 0) & (n_pre == 0))
    if lonely.size:
        raise ValueError(
            f"unit {_show(d.labels[lonely[0]])} is treated in every period it is observed; its untreated "
            f"outcome cannot be imputed ({lonely.size} such unit(s); drop them or check {first_treated!r})"
        )
    m_untreated = np.bincount(d.t[untreated], minlength=T)
    m_treated = np.bincount(d.t[treated], minlength=T)
    uncovered = np.flatnonzero((m_treated > 0) & (m_untreated == 0))
    if uncovered.size:
        periods = ", ".join(str(p) for p in d.periods[uncovered][:10])
        raise ValueError(
            f"no never- or not-yet-treated observations in period(s) {periods}: the period effect "
            "cannot be estimated there, so the untreated outcomes of its treated observations cannot be imputed"
        )

    # ---- stage 1 on the untreated observations
    u0, t0, y0 = d.u[untreated], d.t[untreated], d.y[untreated]
    fe = _TwoWayFE(u0, t0, N, T)
    _require_connected(fe, d, "untreated observations")
    alpha, lam = fe.fit(y0)
    resid = y0 - alpha[u0] - lam[t0]
    df_pooled = len(y0) - N - T + 1
    rss_unit = np.bincount(u0, weights=resid**2, minlength=N)
    if df_pooled > 0:
        pooled_var = float(rss_unit.sum() / df_pooled)
    else:
        warnings.warn(
            f"the untreated observations leave no residual degrees of freedom ({len(y0)} observations, "
            f"{N} unit and {T} period effects); standard errors are NaN",
            stacklevel=2,
        )
        pooled_var = np.nan
    sigma2 = np.full(N, pooled_var)
    if variance == "unit" and df_pooled > 0:
        df_unit = fe.n_i - fe.unit_leverage()
        own = (fe.n_i >= 3) & (df_unit > 0.5)
        sigma2[own] = rss_unit[own] / df_unit[own]

    # ---- stage 2: impute and average
    u1, t1, y1 = d.u[treated], d.t[treated], d.y[treated]
    y0_hat = alpha[u1] + lam[t1]
    tau = y1 - y0_hat
    horizon1 = (d.time_values[treated] - d.ft_obs[treated]).astype(np.int64)
    att = float(tau.mean())
    z = stats.norm.ppf(0.5 + level / 2)

    h_values, h_codes = np.unique(horizon1, return_inverse=True)
    n_h = np.bincount(h_codes)
    k = len(h_values)
    n1 = len(tau)
    # weights: one column per horizon, then the ATT
    rows = np.concatenate([np.arange(n1), np.arange(n1)])
    cols = np.concatenate([h_codes, np.full(n1, k)])
    vals = np.concatenate([1.0 / n_h[h_codes], np.full(n1, 1.0 / n1)])
    weights = sparse.csc_matrix((vals, (rows, cols)), shape=(n1, k + 1))
    var = _linear_variance(fe, sigma2, u1, t1, weights)
    est_h = np.bincount(h_codes, weights=tau) / n_h
    post = pd.DataFrame({"horizon": h_values, "estimate": est_h, "se": _sqrt(var[:k]), "n_obs": n_h.astype(np.int64)})
    att_se = float(_sqrt(var[k]))

    placebo = _placebo(d, untreated, pre_periods, sigma2) if pre_periods > 0 else None
    event_study = pd.concat([placebo, post], ignore_index=True) if placebo is not None else post
    event_study["horizon"] = event_study["horizon"].astype(np.int64)
    event_study["n_obs"] = event_study["n_obs"].astype(np.int64)
    event_study.insert(3, "lower", event_study["estimate"] - z * event_study["se"])
    event_study.insert(4, "upper", event_study["estimate"] + z * event_study["se"])

    # ---- per-unit effects
    treated_units = np.flatnonzero(n_post > 0)
    est_unit = np.bincount(u1, weights=tau, minlength=N)[treated_units] / n_post[treated_units]
    se_unit = _sqrt(_unit_variance(fe, sigma2, u1, t1, treated_units, n_post))
    units = pd.DataFrame(
        {
            "first_treated": d.ft_unit[treated_units].astype(np.int64),
            "n_pre": n_pre[treated_units].astype(np.int64),
            "n_post": n_post[treated_units].astype(np.int64),
            "estimate": est_unit,
            "se": se_unit,
            "lower": est_unit - z * se_unit,
            "upper": est_unit + z * se_unit,
        },
        index=pd.Index(d.labels[treated_units], name=unit),
    )

    observations = pd.DataFrame(
        {
            unit: d.labels[u1],
            time: d.time_values[treated],
            "horizon": horizon1,
            outcome: y1,
            "y0_hat": y0_hat,
            "tau": tau,
        },
        index=panel.index[treated],
    )
    return ImputationResult(
        att=att,
        att_se=att_se,
        event_study=event_study,
        units=units,
        observations=observations,
        unit_effects=pd.Series(alpha, index=pd.Index(d.labels, name=unit), name="unit_effect"),
        time_effects=pd.Series(lam, index=pd.Index(d.periods, name=time), name="time_effect"),
        residual_sd=float(np.sqrt(pooled_var)),
        level=level,
    )


def two_way_fixed_effects(
    panel: pd.DataFrame,
    *,
    unit: str = "creator",
    time: str = "period",
    outcome: str = "outcome",
    first_treated: str = "first_treated",
    event_study: bool = False,
    pre_periods: int = 5,
    post_periods: int | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Two-way fixed-effects regression (static or event study), the comparator.

    OLS of the outcome on unit effects, period effects and treatment regressors, on *all*
    observations:

    * static (``event_study=False``): one regressor ``D_it = 1[t >= first_treated]``;
    * event study: dummies for the relative times ``r = t - first_treated`` in
      ``-pre_periods .. -2`` and ``0 .. post_periods`` (``post_periods`` defaults to the largest
      observed horizon), with ``r = -1`` the reference. Relative times beyond the window are binned
      into the end dummies: ``r < -pre_periods`` into the ``-pre_periods`` dummy and
      ``r > post_periods`` into the ``post_periods`` dummy; with ``pre_periods <= 1`` every ``r < 0``
      is in the reference. Dummies no observation falls into are dropped. The event study needs
      never-treated units: without them the relative-time dummies, the unit effects and the period
      effects are collinear (relative time = period - adoption period), so the dummies are not
      identified.

    The coefficients are computed by Frisch-Waugh-Lovell: the outcome and each regressor are
    residualised on the two-way fixed effects (exactly, without dummy matrices), and the residuals
    regressed on each other. Standard errors are clustered by unit (CR1): the sandwich
    ``(X'X)^-1 (sum_i s_i s_i') (X'X)^-1`` with ``X`` the residualised regressors and ``s_i`` unit
    ``i``'s sum of regressor-times-residual, scaled by ``G/(G-1) * (n-1)/(n-K)`` with ``G`` units,
    ``n`` observations and ``K`` the number of treatment terms plus ``T - 1`` period effects (the
    unit effects are nested in the clusters and not counted).

    With effects that vary across cohorts or grow with time since adoption these coefficients are
    not averages of the effects: already-treated units serve as controls, and the static coefficient
    can be far from the ATT, even of the wrong sign. Use :func:`imputation_estimator` for estimates;
    this function is here to show the problem.

    Parameters
    ----------
    panel : pandas.DataFrame
        Long panel, as for :func:`imputation_estimator`.
    unit, time, outcome, first_treated : str
        Column names.
    event_study : bool, default False
        Relative-time dummies instead of one treatment dummy.
    pre_periods : int, default 5
        Lead window of the event study (ignored when static).
    post_periods : int, optional
        Lag window of the event study; default the largest horizon in the data.
    level : float, default 0.95
        Coverage of the central normal intervals.

    Returns
    -------
    pandas.DataFrame
        One row per term, with ``term`` (``"treated"``, or ``"horizon_<r>"``), ``horizon`` (NaN for
        the static term, ``r`` otherwise), ``estimate``, ``se``, ``lower``, ``upper``.

    Examples
    --------
    >>> import pandas as pd
    >>> panel = pd.DataFrame({
    ...     "creator": ["a"] * 4 + ["b"] * 4,
    ...     "period": [0, 1, 2, 3] * 2,
    ...     "outcome": [1.0, 2.0, 6.0, 7.0, 5.0, 6.0, 7.0, 8.0],
    ...     "first_treated": [2] * 4 + [None] * 4,
    ... })
    >>> two_way_fixed_effects(panel)[["term", "estimate"]].round(10)
          term  estimate
    0  treated       3.0
    """
    level = check_level(level)
    if not isinstance(event_study, (bool, np.bool_)):
        raise TypeError(f"event_study must be True or False; got {event_study!r}")
    pre_periods = _check_count(pre_periods, "pre_periods")
    if post_periods is not None:
        post_periods = _check_count(post_periods, "post_periods")
    d = _prepare(panel, unit, time, outcome, first_treated)
    if not d.treated.any():
        raise ValueError(
            f"no treated observations: no unit is observed at or after its {first_treated!r} period, "
            "so there is no effect to estimate"
        )
    N, T = d.n_units, d.n_periods
    fe = _TwoWayFE(d.u, d.t, N, T)
    _require_connected(fe, d, "observations")

    if not event_study:
        bins = np.where(d.treated, 0, -1)
        terms, horizons = ["treated"], np.array([np.nan])
    else:
        ever = ~np.isnan(d.ft_unit)
        if ever.all():
            raise ValueError(
                f"event_study=True needs never-treated units ({first_treated!r} missing), and every unit is "
                "eventually treated: relative time = period - adoption period, so the relative-time dummies "
                "are collinear with the unit and period effects and not identified"
            )
        valid = ~np.isnan(d.ft_obs)
        rel = np.zeros(len(d.y), dtype=np.int64)
        rel[valid] = (d.time_values[valid] - d.ft_obs[valid]).astype(np.int64)
        post = int(rel[d.treated].max()) if post_periods is None else post_periods
        window = list(range(-pre_periods, -1)) + list(range(post + 1))
        lo = min(-pre_periods, -1)  # with pre_periods <= 1 every r < 0 is clipped to the reference -1
        position = {r: j for j, r in enumerate(window)}
        bin_of = np.array([position.get(r, -1) for r in range(lo, post + 1)])
        bins = np.where(valid, bin_of[np.clip(rel, lo, post) - lo], -1)
        used = np.unique(bins[bins >= 0])  # drop dummies no observation falls into
        remap = np.full(len(window) + 1, -1)
        remap[used] = np.arange(len(used))
        bins = remap[bins]
        horizons = np.array(window, dtype=np.int64)[used]
        terms = [f"horizon_{r}" for r in horizons]
    k = len(terms)
    has = bins >= 0

    # residualise y and every regressor on the two-way fixed effects (one solve for all columns)
    n = len(d.y)
    x = sparse.csc_matrix((np.ones(has.sum()), (np.flatnonzero(has), bins[has])), shape=(n, k))
    a_u = sparse.csr_matrix((np.ones(n), (d.u, np.arange(n))), shape=(N, n))
    a_t = sparse.csr_matrix((np.ones(n), (d.t, np.arange(n))), shape=(T, n))
    g_a = np.column_stack([np.bincount(d.u, weights=d.y, minlength=N), (a_u @ x).toarray()])
    g_l = np.column_stack([np.bincount(d.t, weights=d.y, minlength=T), (a_t @ x).toarray()])
    xa, xl = fe.solve(g_a, g_l)
    y_res = d.y - xa[d.u, 0] - xl[d.t, 0]

    def x_res(j: int) -> np.ndarray:
        return (bins == j).astype(float) - xa[d.u, j + 1] - xl[d.t, j + 1]

    xtx = np.empty((k, k))
    for j in range(k):
        xtx[:, j] = np.bincount(bins[has], weights=x_res(j)[has], minlength=k)
    xtx = (xtx + xtx.T) / 2
    xty = np.bincount(bins[has], weights=y_res[has], minlength=k)
    eig = np.linalg.eigvalsh(xtx)
    if eig[0] <= 1e-9 * max(eig[-1], 1.0):
        raise ValueError(
            "the treatment terms are collinear with the unit and period effects (e.g. every unit adopts in "
            "the same period and none is never treated), so their coefficients are not identified"
        )
    beta = linalg.solve(xtx, xty, assume_a="pos")
    resid = y_res.copy()
    columns = []
    for j in range(k):
        xj = x_res(j)
        resid -= beta[j] * xj
        columns.append(xj)
    scores = np.column_stack([np.bincount(d.u, weights=xj * resid, minlength=N) for xj in columns])
    del columns
    bread = np.linalg.inv(xtx)
    n_params = k + T - 1
    factor = N / (N - 1) * (n - 1) / (n - n_params) if N > 1 and n > n_params else np.nan
    cov = factor * bread @ (scores.T @ scores) @ bread
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    z = stats.norm.ppf(0.5 + level / 2)
    return pd.DataFrame(
        {
            "term": terms,
            "horizon": horizons,
            "estimate": beta,
            "se": se,
            "lower": beta - z * se,
            "upper": beta + z * se,
        }
    )


# --------------------------------------------------------------------------------------------
# internals


@dataclass
class _Panel:
    labels: np.ndarray  # unit label per unit code, in order of first appearance
    periods: np.ndarray  # sorted distinct periods (int64)
    u: np.ndarray  # unit code per row
    t: np.ndarray  # period code per row
    time_values: np.ndarray  # period per row (int64)
    y: np.ndarray
    ft_obs: np.ndarray  # first treated period per row (float, NaN = never)
    ft_unit: np.ndarray  # first treated period per unit
    treated: np.ndarray  # bool per row

    @property
    def n_units(self) -> int:
        return len(self.labels)

    @property
    def n_periods(self) -> int:
        return len(self.periods)


def _check_count(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0; got {value!r}")
    return int(value)


def _show(x) -> str:
    """repr of a label, without numpy's type wrapper."""
    return repr(x.item() if isinstance(x, np.generic) else x)


def _row_label(panel: pd.DataFrame, i: int) -> str:
    return f"row {_show(panel.index[i])}"


def _integer_like(values: pd.Series, panel: pd.DataFrame, column: str, *, allow_missing: bool) -> np.ndarray:
    """Float array of integer-valued numbers (NaN where missing, if allowed)."""
    what = f"column {column!r}"
    if pd.api.types.is_bool_dtype(values.dtype):
        raise ValueError(f"{what} must hold integer-like numbers; got booleans")
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=float, na_value=np.nan)
    else:
        objs = values.to_numpy(dtype=object)
        missing = pd.isna(values).to_numpy()
        bad = np.array(
            [
                not m and (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real))
                for v, m in zip(objs, missing, strict=True)
            ],
            dtype=bool,
        )
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{what} must hold integer-like numbers; got {objs[i]!r} in {_row_label(panel, i)}")
        arr = np.array([np.nan if m else float(v) for v, m in zip(objs, missing, strict=True)], dtype=float)
    nan = np.isnan(arr)
    if nan.any() and not allow_missing:
        i = int(np.flatnonzero(nan)[0])
        raise ValueError(f"{what} has a missing value in {_row_label(panel, i)}")
    with np.errstate(invalid="ignore"):
        bad = ~nan & (~np.isfinite(arr) | (arr != np.round(arr)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        got = float(arr[i])
        raise ValueError(f"{what} must hold integer-like numbers; got {got!r} in {_row_label(panel, i)}")
    return arr


def _prepare(panel, unit: str, time: str, outcome: str, first_treated: str) -> _Panel:
    if not isinstance(panel, pd.DataFrame):
        raise TypeError(f"panel must be a pandas DataFrame; got {type(panel).__name__}")
    for name, value in (("unit", unit), ("time", time), ("outcome", outcome), ("first_treated", first_treated)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a column name (str); got {value!r}")
    missing = [c for c in (unit, time, outcome, first_treated) if c not in panel.columns]
    if missing:
        raise ValueError(f"panel is missing column(s) {missing}; it has {list(panel.columns)}")
    if len(panel) == 0:
        raise ValueError("panel is empty")

    unit_col = panel[unit]
    no_label = unit_col.isna().to_numpy()
    if no_label.any():
        row = _row_label(panel, int(np.flatnonzero(no_label)[0]))
        raise ValueError(f"column {unit!r} has a missing unit label in {row}")
    u, labels = pd.factorize(unit_col, sort=False)
    labels = np.asarray(labels, dtype=object) if labels.dtype == object else np.asarray(labels)

    y_col = panel[outcome]
    if not pd.api.types.is_numeric_dtype(y_col.dtype) or pd.api.types.is_bool_dtype(y_col.dtype):
        raise ValueError(f"column {outcome!r} (the outcome) must be numeric; got dtype {y_col.dtype}")
    y = y_col.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"column {outcome!r} (the outcome) must be finite; got {y[i]} in {_row_label(panel, i)} "
            f"(unit {_show(labels[u[i]])}), {int(bad.sum())} non-finite value(s) in all"
        )

    time_values = _integer_like(panel[time], panel, time, allow_missing=False).astype(np.int64)
    periods, t = np.unique(time_values, return_inverse=True)
    N, T = len(labels), len(periods)

    key = u.astype(np.int64) * T + t
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(np.diff(key[order]) == 0)
    if dup.size:
        i = int(order[dup[0] + 1])
        raise ValueError(
            f"duplicate rows for ({unit}, {time}) = ({_show(labels[u[i]])}, {time_values[i]}): each unit may "
            f"appear once per period ({dup.size} duplicate(s) in all)"
        )

    ft_obs = _integer_like(panel[first_treated], panel, first_treated, allow_missing=True)
    ft_unit = np.full(N, np.nan)
    ft_unit[u[::-1]] = ft_obs[::-1]  # first row of each unit
    ref = ft_unit[u]
    varies = ~((ft_obs == ref) | (np.isnan(ft_obs) & np.isnan(ref)))
    if varies.any():
        i = int(np.flatnonzero(varies)[0])
        raise ValueError(
            f"column {first_treated!r} must be constant within each unit; unit {_show(labels[u[i]])} has "
            f"{_fmt(ref[i])} and {_fmt(ft_obs[i])}"
        )
    with np.errstate(invalid="ignore"):
        treated = ~np.isnan(ft_obs) & (time_values >= ft_obs)
    return _Panel(labels, periods, u.astype(np.int64), t.astype(np.int64), time_values, y, ft_obs, ft_unit, treated)


def _sqrt(var: np.ndarray) -> np.ndarray:
    """Square root of variances, clipping the rounding error of exact zeros (NaN stays NaN)."""
    return np.sqrt(np.clip(var, 0.0, None))


def _fmt(x: float) -> str:
    return "missing" if np.isnan(x) else str(int(x))


class _TwoWayFE:
    """Least squares for ``y_it = alpha_i + lambda_t`` on a set of (unit, period) cells.

    Normal equations ``[[D_a, B], [B', D_l]] [alpha; lambda] = [g_a; g_l]`` with ``D_a`` the unit
    counts, ``D_l`` the period counts and ``B`` the unit-by-period count matrix. Eliminating
    ``alpha = D_a^-1 (g_a - B lambda)`` leaves ``S lambda = g_l - B' D_a^-1 g_a`` with the Schur
    complement ``S = D_l - B' D_a^-1 B`` (a graph Laplacian over periods, singular along the
    constant vector). ``lambda`` of the first active period is fixed at 0 and the rest is solved by
    Cholesky. Units or periods without observations get effect 0 (they are not identified).
    """

    def __init__(self, u: np.ndarray, t: np.ndarray, n_units: int, n_periods: int):
        self.N, self.T = n_units, n_periods
        self.u, self.t = u, t
        self.n_i = np.bincount(u, minlength=n_units).astype(float)
        self.m_t = np.bincount(t, minlength=n_periods).astype(float)
        self.inv_n = np.divide(1.0, self.n_i, out=np.zeros(n_units), where=self.n_i > 0)
        self.B = sparse.csr_matrix((np.ones(len(u)), (u, t)), shape=(n_units, n_periods))
        self.B.sum_duplicates()
        active_units = self.n_i > 0
        active_periods = np.flatnonzero(self.m_t > 0)
        graph = sparse.bmat([[None, self.B], [self.B.T, None]], format="csr")
        n_comp, comp = csgraph.connected_components(graph, directed=False)
        isolated = (~active_units).sum() + (self.m_t == 0).sum()
        self.n_components = int(n_comp - isolated)
        self.unit_component = comp[:n_units]
        self.free = active_periods[1:]  # the first active period is the reference (lambda = 0)
        if self.n_components == 1 and self.free.size:
            s = np.diag(self.m_t) - (self.B.T @ self.B.multiply(self.inv_n[:, None]).tocsr()).toarray()
            s = s[np.ix_(self.free, self.free)]
            self._chol = linalg.cho_factor(s, lower=True)
        else:
            self._chol = None

    def solve(self, g_a: np.ndarray, g_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve the normal equations for right-hand sides ``g_a`` (N, k) and ``g_l`` (T, k)."""
        rhs = g_l - self.B.T @ (g_a * self.inv_n[:, None])
        x_l = np.zeros_like(rhs)
        if self._chol is not None:
            x_l[self.free] = linalg.cho_solve(self._chol, rhs[self.free])
        x_a = self.inv_n[:, None] * (g_a - self.B @ x_l)
        return x_a, x_l

    def fit(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fixed effects fitted to ``y`` (one value per cell, in the order given to the constructor)."""
        g_a = np.bincount(self.u, weights=y, minlength=self.N)[:, None]
        g_l = np.bincount(self.t, weights=y, minlength=self.T)[:, None]
        x_a, x_l = self.solve(g_a, g_l)
        return x_a[:, 0], x_l[:, 0]

    def unit_leverage(self) -> np.ndarray:
        """Sum of the leverages of each unit's cells: ``1 + sum_t P_tt - b_i' P b_i / n_i``."""
        p = np.zeros((self.T, self.T))
        if self._chol is not None:
            p[np.ix_(self.free, self.free)] = linalg.cho_solve(self._chol, np.eye(self.free.size))
        quad = np.asarray(self.B.multiply(self.B @ p).sum(axis=1)).ravel()
        return np.where(self.n_i > 0, 1.0 + self.B @ np.diag(p) - quad * self.inv_n, 0.0)


def _require_connected(fe: _TwoWayFE, d: _Panel, what: str) -> None:
    if fe.n_components > 1:
        comp = fe.unit_component
        first = int(np.flatnonzero(fe.n_i > 0)[0])
        other = int(np.flatnonzero((fe.n_i > 0) & (comp != comp[first]))[0]) if (comp != comp[first]).any() else None
        example = f" (e.g. units {_show(d.labels[first])} and {_show(d.labels[other])})" if other is not None else ""
        raise ValueError(
            f"the {what} do not connect all units and periods: they fall into {fe.n_components} groups that "
            f"share no unit or period{example}, so the unit and period effects cannot be put on one scale"
        )


def _linear_variance(fe: _TwoWayFE, sigma2: np.ndarray, u_h: np.ndarray, t_h: np.ndarray, weights) -> np.ndarray:
    """Variance of ``sum_h w_h (Y_h - Y_hat_h(0))`` for each column of the sparse ``weights``.

    ``u_h``, ``t_h``: unit and period codes of the imputed cells; ``fe``: the stage-1 fit they are
    imputed from; ``sigma2``: error variance per unit. The imputation part of the weights is
    ``v = -Z0 x`` with ``(Z0'Z0) x = Z1' w``; its contribution ``sum_i sigma_i^2 sum_{t in U_i}
    (x_a_i + x_l_t)^2`` is expanded so that nothing of size cells x columns is formed.
    """
    n_h = len(u_h)
    cells = np.arange(n_h)
    a_u = sparse.csr_matrix((np.ones(n_h), (u_h, cells)), shape=(fe.N, n_h))
    a_t = sparse.csr_matrix((np.ones(n_h), (t_h, cells)), shape=(fe.T, n_h))
    x_a, x_l = fe.solve((a_u @ weights).toarray(), (a_t @ weights).toarray())
    own = np.asarray(weights.multiply(weights).T @ sigma2[u_h]).ravel()
    s_n = sigma2 * fe.n_i
    imputed = s_n @ x_a**2 + 2.0 * np.sum(sigma2[:, None] * x_a * (fe.B @ x_l), axis=0) + (fe.B.T @ sigma2) @ x_l**2
    return own + imputed


def _unit_variance(fe, sigma2, u1, t1, units: np.ndarray, n_post: np.ndarray) -> np.ndarray:
    """Exact variance of each treated unit's mean effect, in ``O(N T^2)`` for all of them.

    For unit ``j`` the weights are ``1/n_post_j`` on its treated cells, so ``Z1'w`` is ``e_j`` in the
    unit block and the unit's treated-period indicator over ``n_post_j`` in the period block. After
    elimination, every other unit ``i`` has ``x_a_i = -mean of x_l over its untreated periods``, so
    their total contribution is the quadratic form ``x_l' M x_l`` with the one matrix
    ``M = sum_i sigma_i^2 (diag(b_i) - b_i b_i' / n_i)``; unit ``j``'s own term is corrected
    separately.
    """
    J = len(units)
    col = np.full(fe.N, -1)
    col[units] = np.arange(J)
    g_l = sparse.csr_matrix((1.0 / n_post[u1], (t1, col[u1])), shape=(fe.T, J)).toarray()
    b_j = fe.B[units].T.tocsr()  # (T, J): untreated periods of each treated unit
    n_j = fe.n_i[units]
    rhs = g_l - b_j.multiply(1.0 / n_j[None, :]).toarray()
    x_l = np.zeros((fe.T, J))
    if fe._chol is not None:
        x_l[fe.free] = linalg.cho_solve(fe._chol, rhs[fe.free])
    m = np.diag(fe.B.T @ sigma2) - (fe.B.T @ fe.B.multiply((sigma2 * fe.inv_n)[:, None]).tocsr()).toarray()
    quad = np.sum(x_l * (m @ x_l), axis=0)
    bx = np.asarray(b_j.multiply(x_l).sum(axis=0)).ravel()  # b_j' x_l
    bx2 = np.asarray(b_j.multiply(x_l**2).sum(axis=0)).ravel()  # sum of x_l^2 over j's untreated periods
    s_j = sigma2[units]
    in_m = s_j * (bx2 - bx**2 / n_j)
    x_a = (1.0 - bx) / n_j
    exact_own = s_j * (n_j * x_a**2 + 2.0 * x_a * bx + bx2)
    return s_j / n_post[units] + quad - in_m + exact_own


def _placebo(d: _Panel, untreated: np.ndarray, pre_periods: int, sigma2: np.ndarray) -> pd.DataFrame | None:
    """Leave-out imputation of the untreated cells at horizons -pre_periods..-1."""
    N, T = d.n_units, d.n_periods
    with np.errstate(invalid="ignore"):
        rel = d.time_values - d.ft_obs
        hold = untreated & ~np.isnan(d.ft_obs) & (rel >= -pre_periods) & (rel <= -1)
    keep = untreated & ~hold
    hold &= np.bincount(d.u[keep], minlength=N)[d.u] > 0  # the unit keeps an untreated cell
    hold &= np.bincount(d.t[keep], minlength=T)[d.t] > 0  # the period keeps an untreated cell
    if not hold.any():
        return None
    fe = _TwoWayFE(d.u[keep], d.t[keep], N, T)
    if fe.n_components > 1:
        warnings.warn(
            "pre-trend placebos skipped: without the held-out pre-adoption observations the remaining "
            "untreated observations do not connect all units and periods",
            stacklevel=3,
        )
        return None
    alpha, lam = fe.fit(d.y[keep])
    u_h, t_h = d.u[hold], d.t[hold]
    effect = d.y[hold] - alpha[u_h] - lam[t_h]
    h_values, h_codes = np.unique(rel[hold].astype(np.int64), return_inverse=True)
    n_h = np.bincount(h_codes)
    weights = sparse.csc_matrix((1.0 / n_h[h_codes], (np.arange(len(u_h)), h_codes)), shape=(len(u_h), len(h_values)))
    var = _linear_variance(fe, sigma2, u_h, t_h, weights)
    return pd.DataFrame(
        {
            "horizon": h_values,
            "estimate": np.bincount(h_codes, weights=effect) / n_h,
            "se": _sqrt(var),
            "n_obs": n_h.astype(np.int64),
        }
    )

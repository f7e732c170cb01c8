"""The imputation estimator of Borusyak, Jaravel and Spiess (2024) for staggered adoption.

**Stage 1.** Fit ``Y_it = alpha_i + lambda_t + e_it`` by least squares on the *untreated*
observations only: never-treated units, and treated units before ``first_treated``.
**Stage 2.** Impute ``Y_hat_it(0) = alpha_i + lambda_t`` for every treated observation and set
``tau_it = Y_it - Y_hat_it(0)``. The ATT is the mean of ``tau_it`` over all treated observations,
the event-study estimate at horizon ``h >= 0`` the mean over treated observations with
``t - first_treated = h``, and a unit's estimate the mean over its own treated observations.
Under parallel trends and no anticipation these are unbiased for the corresponding averages of
the realised effects, however the effects vary across units and time.

Standard errors: see :func:`imputation_estimator` and ``hbm_lib.staggered._variance``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse, stats

from hbm_lib._validation import check_choice, check_level
from hbm_lib.staggered import _variance
from hbm_lib.staggered._fixed_effects import TwoWayFE, require_connected
from hbm_lib.staggered._panel import Panel, check_count, prepare, require_treated, show, sqrt_var

__all__ = ["ImputationResult", "imputation_estimator"]

Variance = Literal["cluster", "unit", "pooled"]
VARIANCES = ("cluster", "unit", "pooled")
UnitSE = Literal["ar1", "iid"]
UNIT_SES = ("ar1", "iid")
UnitInterval = Literal["normal", "t"]
UNIT_INTERVALS = ("normal", "t")


@dataclass(frozen=True, eq=False)
class ImputationResult:
    """What :func:`imputation_estimator` returns.

    Attributes
    ----------
    att : float
        Mean of ``tau_it`` over all treated observations.
    att_se : float
        Its standard error (``variance`` says which).
    event_study : pandas.DataFrame
        One row per horizon ``h = t - first_treated``, with columns ``horizon`` (int), ``estimate``,
        ``se``, ``lower``, ``upper`` and ``n_obs``. Rows with ``h >= 0`` average ``tau_it`` over the
        treated observations at that horizon (``0`` is the adoption period); rows with ``h < 0``
        are leave-out placebos (imputed "effects" in untreated periods, ~0 under parallel trends
        and no anticipation). For the joint pre-trend test of Borusyak et al. use
        :func:`hbm_lib.pretrend_test`.
    units : pandas.DataFrame
        One row per treated unit, indexed by unit label (index named after the ``unit`` column),
        with ``first_treated``, ``n_pre`` (untreated observations), ``n_post`` (treated
        observations), ``estimate`` (mean ``tau_it`` over the unit's treated observations), ``se``,
        ``df`` (the degrees of freedom of ``se``), ``lower`` and ``upper`` (``unit_se`` says how
        ``se`` and ``df`` were computed, ``unit_interval`` how the interval was).
    observations : pandas.DataFrame
        One row per treated observation, keeping the panel's index, with the unit and time columns
        (under the panel's names), ``horizon``, the outcome column, ``y0_hat`` (imputed untreated
        outcome) and ``tau`` (outcome minus ``y0_hat``).
    unit_effects, time_effects : pandas.Series
        The fitted ``alpha_i`` (every unit) and ``lambda_t`` (every period, sorted), normalised so
        that the time effect of the first period is ``0``.
    residual_sd : float
        Pooled standard deviation of the stage-1 residuals (residual sum of squares over
        ``n_untreated - n_units - n_periods + 1`` degrees of freedom).
    serial_correlation : float
        The lag-1 autocorrelation of the errors estimated from the stage-1 residuals (first
        differences, pooled over units; see ``unit_se``). Clearly positive values mean standard
        errors that assume independent errors are too small.
    variance, unit_se, unit_interval : str
        How ``att_se`` and the event-study ``se`` were computed, the unit ``se``, and the unit
        intervals.
    n_clusters : int
        Number of clusters of the clustered variance.
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
    serial_correlation: float
    variance: str
    unit_se: str
    n_clusters: int
    level: float
    unit_interval: str = "normal"

    def __repr__(self) -> str:
        return (
            f"ImputationResult(att={self.att:.4g}, att_se={self.att_se:.4g}, variance={self.variance!r}, "
            f"treated_units={len(self.units)}, treated_observations={len(self.observations)}, "
            f"horizons={self.event_study['horizon'].tolist()}, level={self.level})"
        )


def imputation_estimator(
    panel: pd.DataFrame,
    *,
    unit: str = "unit",
    time: str = "time",
    outcome: str = "outcome",
    first_treated: str = "first_treated",
    cluster: str | None = None,
    variance: Variance = "cluster",
    unit_se: UnitSE = "ar1",
    unit_interval: UnitInterval = "normal",
    pre_periods: int = 5,
    level: float = 0.95,
) -> ImputationResult:
    """Imputation estimator of staggered-adoption effects (Borusyak, Jaravel and Spiess, 2024).

    Stage 1 fits unit and period effects on the untreated observations, stage 2 imputes the
    untreated outcome of every treated observation and averages the differences (module
    docstring). Panels may be unbalanced.

    **Standard errors of the ATT and the event study** (``variance``):

    * ``"cluster"`` (default): the conservative estimator of Borusyak et al. (2024, Theorem 3),
      clustered by unit (or by the column ``cluster``, constant within a unit): with ``v_it`` the
      estimator's weight on each observation, ``var = sum_c (sum_{it in c} v_it e_it)^2``, where
      ``e_it`` is the stage-1 residual for untreated observations and ``tau_it`` minus the
      average effect of its cohort-by-period cell for treated ones (averaged with the weights of
      their Section 4.3, as in their ``did_imputation``). Robust to heteroskedasticity and to any
      correlation within a cluster, serial correlation included; conservative when effects vary
      within a cohort-period cell. It needs many clusters.
    * ``"unit"``: ``sum_it v_it^2 sigma_i^2`` with each unit's own error variance estimated from
      its stage-1 residuals (leverage-corrected; units with fewer than 3 untreated observations
      get the pooled variance). Exact when the errors are independent over time; too small when
      they are serially correlated.
    * ``"pooled"``: the same with one pooled error variance for every unit.

    Every one treats the effects as fixed: the estimand is the *sample* average of the realised
    effects of the units' own treated periods.

    **Standard errors of each unit's effect** (``unit_se``). A unit's estimate averages its own
    few treated observations; the part of its variance that comes from its own errors cannot be
    clustered (a unit is one cluster), and individual estimates are not consistent (Borusyak et
    al.): they are noisy by construction, which is what stage-2 pooling is for.

    * ``"ar1"`` (default): the unit's own errors follow a stationary AR(1) whose coefficient is
      estimated from all units' stage-1 residuals (``serial_correlation``) and whose variance is
      the unit's own, corrected for that autocorrelation; the part that comes from other units'
      errors (through the fitted period effects) is clustered by unit.
    * ``"iid"``: independent errors with the unit's own variance (``variance="pooled"``: one
      pooled variance), the exact formula under independence.

    A unit's own error variance is estimated from its few untreated residuals, so its ``se`` is
    itself noisy. ``df`` (in ``units``) is its Satterthwaite degrees of freedom: with ``own`` the
    part of the variance proportional to the unit's own error variance (estimated with ``d``
    residual degrees of freedom, ``n_pre`` minus the unit's leverage, less for AR(1) errors) and
    the rest from other units' errors (treated as known), ``df = d * (se^2 / own)^2``, at most the
    pooled residual degrees of freedom (which units with the pooled variance get).

    Intervals are ``estimate -/+ z * se`` with ``z`` the normal quantile for ``level`` (the ATT
    and the event study always; units by default). With ``unit_interval="t"`` the unit intervals
    use the ``t`` quantile with the unit's ``df`` instead, which is what restores their coverage
    when units have few untreated periods (with 6 untreated periods, ``df`` is about 5 and the
    normal interval covers about 0.90 instead of 0.95).

    **Pre-trend placebos** (event-study horizons ``-pre_periods .. -1``). A second stage-1 fit
    leaves out the untreated observations of eventually-treated units at those horizons,
    imputes them from the rest and reports the mean imputed "effect" per horizon, with standard
    errors of the same kind as the post-treatment horizons (computed in the placebo fit). A
    check only: the main estimates use all untreated observations. A unit that would lose all its
    untreated observations is left out of the placebos, as are observations in periods with none
    left; if the rest does not connect all units and periods the placebos are skipped with a
    warning. ``pre_periods=0`` disables them.

    Parameters
    ----------
    panel : pandas.DataFrame
        Long panel, one row per unit and period (rows may be missing).
    unit, time, outcome, first_treated : str
        Column names. ``time`` holds integer-like numbers or pandas Periods; ``first_treated`` the
        first treated period, constant within a unit, **missing for never-treated units** (a
        ``first_treated`` of ``inf``, or of 0 before the first period, is refused with a message).
    cluster : str, optional
        Column to cluster by, constant within each unit (e.g. a state when units are counties);
        default the unit.
    variance : {"cluster", "unit", "pooled"}, default "cluster"
    unit_se : {"ar1", "iid"}, default "ar1"
    unit_interval : {"normal", "t"}, default "normal"
    pre_periods : int, default 5
    level : float, default 0.95

    Returns
    -------
    ImputationResult

    Raises
    ------
    ValueError
        If a column is missing, an outcome is not finite, periods or ``first_treated`` are not
        integer-like (or Periods), a (unit, period) pair appears twice, ``first_treated`` or
        ``cluster`` varies within a unit, there are no treated observations, a treated unit has no
        untreated observation, a period with treated observations has no untreated one, or the
        untreated observations do not connect all units and periods.

    References
    ----------
    Borusyak, K., Jaravel, X. and Spiess, J. (2024). Revisiting event-study designs: robust and
    efficient estimation. *Review of Economic Studies* 91(6), 3253-3285.

    Examples
    --------
    Two units, one adopting in period 2 with an effect of 3, one never adopting; no noise:

    >>> import pandas as pd
    >>> panel = pd.DataFrame({
    ...     "unit": ["a"] * 4 + ["b"] * 4,
    ...     "time": [0, 1, 2, 3] * 2,
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
    pre_periods = check_count(pre_periods, "pre_periods")
    variance = check_choice(variance, "variance", VARIANCES)
    unit_se = check_choice(unit_se, "unit_se", UNIT_SES)
    unit_interval = check_choice(unit_interval, "unit_interval", UNIT_INTERVALS)
    d = prepare(panel, unit, time, outcome, first_treated, cluster)
    _check_imputable(d, first_treated)
    s1 = _StageOne.fit(d, variance)
    z = stats.norm.ppf(0.5 + level / 2)
    tau = d.y[d.treated] - s1.alpha[d.u[d.treated]] - s1.lam[d.t[d.treated]]
    post, att, att_se = _post_horizons(d, s1, tau, variance)
    placebo = _placebo(d, s1, pre_periods, variance) if pre_periods > 0 else None
    event_study = pd.concat([placebo, post], ignore_index=True) if placebo is not None else post
    event_study = _with_intervals(event_study.astype({"horizon": np.int64, "n_obs": np.int64}), z)
    units = _unit_table(d, s1, tau, unit_se, level if unit_interval == "t" else None, z).rename_axis(unit)
    u1 = d.u[d.treated]
    observations = pd.DataFrame(
        {unit: d.labels[u1], time: panel[time].to_numpy()[d.treated], "horizon": d.horizon[d.treated].astype(np.int64),
         outcome: d.y[d.treated], "y0_hat": d.y[d.treated] - tau, "tau": tau},
        index=panel.index[d.treated],
    )
    return ImputationResult(
        att=att, att_se=att_se, event_study=event_study, units=units, observations=observations,
        unit_effects=pd.Series(s1.alpha, index=pd.Index(d.labels, name=unit), name="unit_effect"),
        time_effects=pd.Series(s1.lam, index=pd.Index(d.periods, name=time), name="time_effect"),
        residual_sd=float(np.sqrt(s1.pooled_var)), serial_correlation=s1.rho, variance=variance,
        unit_se=unit_se, n_clusters=len(np.unique(d.cluster)), level=level, unit_interval=unit_interval,
    )


def _check_imputable(d: Panel, first_treated: str) -> None:
    require_treated(d, first_treated)
    n_pre = np.bincount(d.u[~d.treated], minlength=d.n_units)
    n_post = np.bincount(d.u[d.treated], minlength=d.n_units)
    lonely = np.flatnonzero((n_post > 0) & (n_pre == 0))
    if lonely.size:
        raise ValueError(
            f"unit {show(d.labels[lonely[0]])} is treated in every period it is observed; its untreated "
            f"outcome cannot be imputed ({lonely.size} such unit(s); drop them or check {first_treated!r}; "
            "this library codes never-treated units by a missing first_treated)"
        )
    m_untreated = np.bincount(d.t[~d.treated], minlength=d.n_periods)
    m_treated = np.bincount(d.t[d.treated], minlength=d.n_periods)
    uncovered = np.flatnonzero((m_treated > 0) & (m_untreated == 0))
    if uncovered.size:
        periods = ", ".join(str(p) for p in d.periods[uncovered][:10])
        raise ValueError(
            f"no never- or not-yet-treated observations in period(s) {periods}: the period effect "
            "cannot be estimated there, so the untreated outcomes of its treated observations cannot be imputed"
        )


@dataclass
class _StageOne:
    """The fixed effects fitted on the untreated observations, their residuals and error variances."""

    fe: TwoWayFE
    alpha: np.ndarray
    lam: np.ndarray
    resid: np.ndarray
    u0: np.ndarray
    t0: np.ndarray
    pooled_var: float
    sigma2: np.ndarray  # error variance per unit, for the model-based ("unit"/"pooled") variances
    rho: float
    df: np.ndarray  # residual degrees of freedom of each unit's sigma2 (the pooled df where pooled)
    df_pooled: float

    @classmethod
    def fit(cls, d: Panel, variance: str) -> _StageOne:
        untreated = ~d.treated
        u0, t0, y0 = d.u[untreated], d.t[untreated], d.y[untreated]
        fe = TwoWayFE(u0, t0, d.n_units, d.n_periods)
        require_connected(fe, d, "untreated observations")
        alpha, lam = fe.fit(y0)
        resid = y0 - alpha[u0] - lam[t0]
        df_pooled = len(y0) - d.n_units - d.n_periods + 1
        rss_unit = np.bincount(u0, weights=resid**2, minlength=d.n_units)
        if df_pooled > 0:
            pooled_var = float(rss_unit.sum() / df_pooled)
        else:
            warnings.warn(
                f"the untreated observations leave no residual degrees of freedom ({len(y0)} observations, "
                f"{d.n_units} unit and {d.n_periods} period effects); standard errors are NaN",
                stacklevel=3,
            )
            pooled_var = np.nan
        sigma2 = np.full(d.n_units, pooled_var)
        df = np.full(d.n_units, float(max(df_pooled, 0)))
        if variance != "pooled" and df_pooled > 0:
            df_unit = fe.n_i - fe.unit_leverage()
            own = (fe.n_i >= 3) & (df_unit > 0.5)
            sigma2[own] = rss_unit[own] / df_unit[own]
            df[own] = df_unit[own]
        rho = _variance.ar1_correlation(resid, u0, d.time_values[untreated]) if df_pooled > 0 else 0.0
        return cls(fe, alpha, lam, resid, u0, t0, pooled_var, sigma2, rho, df, float(max(df_pooled, 0)))

    def ar1_sigma2(self, d: Panel, variance: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Unit error variances with the degrees of freedom corrected for AR(1) errors, those
        degrees of freedom, and the pooled ones: the unit's residuals are deviations from its own mean,
        ``E[RSS_i] ~ sigma_i^2 (n_i - q_i - (h_i - 1))`` with ``q_i = 1' Gamma_i 1 / n_i`` (1 for
        independent errors) and ``h_i`` its leverage."""
        fe = self.fe
        gamma = self.rho ** np.abs(d.periods[:, None] - d.periods[None, :]).astype(float)
        q = np.asarray(fe.B.multiply(fe.B @ gamma).sum(axis=1)).ravel() * fe.inv_n
        rss = np.bincount(self.u0, weights=self.resid**2, minlength=d.n_units)
        df = fe.n_i - q - (fe.unit_leverage() - 1.0)
        total_df = df[fe.n_i > 0].sum() - (d.n_periods - 1)
        pooled = float(rss.sum() / total_df) if total_df > 0 else np.nan
        out = np.full(d.n_units, pooled)
        dfs = np.full(d.n_units, float(max(total_df, 0)))
        own = (fe.n_i >= 3) & (df > 0.5)
        if variance != "pooled":
            out[own] = rss[own] / df[own]
            dfs[own] = df[own]
        return out, dfs, float(max(total_df, 0))


def _variances(d: Panel, s1: _StageOne, tau: np.ndarray, u1, t1, cells, weights, variance: str) -> np.ndarray:
    if variance == "cluster":
        return _variance.cluster_variance(s1.fe, s1.resid, s1.u0, s1.t0, tau, u1, t1, cells, d.cluster, weights)
    return _variance.iid_variance(s1.fe, s1.sigma2, u1, t1, weights)


def _cohort_period_cells(d: Panel, mask: np.ndarray) -> np.ndarray:
    """Code of each masked observation's (cohort, period) cell: the cells BJS average effects in."""
    _, cells = np.unique(np.column_stack([d.ft_obs[mask], d.t[mask]]), axis=0, return_inverse=True)
    return cells.ravel()


def _post_horizons(d: Panel, s1: _StageOne, tau: np.ndarray, variance: str) -> tuple[pd.DataFrame, float, float]:
    """Estimate and variance of every horizon ``>= 0`` and of the ATT (one weight column each)."""
    horizon1 = d.horizon[d.treated].astype(np.int64)
    h_values, h_codes = np.unique(horizon1, return_inverse=True)
    n_h, k, n1 = np.bincount(h_codes), len(h_values), len(tau)
    rows = np.concatenate([np.arange(n1), np.arange(n1)])
    cols = np.concatenate([h_codes, np.full(n1, k)])
    vals = np.concatenate([1.0 / n_h[h_codes], np.full(n1, 1.0 / n1)])
    weights = sparse.csc_matrix((vals, (rows, cols)), shape=(n1, k + 1))
    cells = _cohort_period_cells(d, d.treated)
    var = _variances(d, s1, tau, d.u[d.treated], d.t[d.treated], cells, weights, variance)
    post = pd.DataFrame(
        {"horizon": h_values, "estimate": np.bincount(h_codes, weights=tau) / n_h, "se": sqrt_var(var[:k]), "n_obs": n_h}
    )
    return post, float(tau.mean()), float(sqrt_var(var[k]))


def _with_intervals(table: pd.DataFrame, z: float) -> pd.DataFrame:
    table.insert(3, "lower", table["estimate"] - z * table["se"])
    table.insert(4, "upper", table["estimate"] + z * table["se"])
    return table


def _unit_table(d: Panel, s1: _StageOne, tau: np.ndarray, unit_se: str, t_level: float | None, z: float) -> pd.DataFrame:
    """One row per treated unit; ``t_level``: the level of t intervals (None: normal intervals)."""
    u1, t1 = d.u[d.treated], d.t[d.treated]
    n_pre = np.bincount(d.u[~d.treated], minlength=d.n_units)
    n_post = np.bincount(u1, minlength=d.n_units)
    units = np.flatnonzero(n_post > 0)
    estimate = np.bincount(u1, weights=tau, minlength=d.n_units)[units] / n_post[units]
    if unit_se == "iid":
        var, own = _variance.unit_variances_iid(s1.fe, s1.sigma2, u1, t1, units, n_post)
        df_own, df_max = s1.df[units], s1.df_pooled
    else:
        variance = "pooled" if np.all(s1.sigma2 == s1.pooled_var) else "unit"
        sigma2, dfs, df_max = s1.ar1_sigma2(d, variance)
        var, own = _variance.unit_variances_ar1(s1.fe, sigma2, s1.rho, s1.resid, s1.u0, s1.t0, u1, t1, units, n_post, d.periods)
        df_own = dfs[units]
    se = sqrt_var(var)
    df = _satterthwaite_df(var, own, df_own, df_max)
    half = se * (stats.t.ppf(0.5 + t_level / 2, df) if t_level is not None else z)
    return pd.DataFrame(
        {
            "first_treated": d.ft_unit[units].astype(np.int64), "n_pre": n_pre[units], "n_post": n_post[units],
            "estimate": estimate, "se": se, "df": df, "lower": estimate - half, "upper": estimate + half,
        },
        index=pd.Index(d.labels[units]),
    )


def _satterthwaite_df(var: np.ndarray, own: np.ndarray, df_own: np.ndarray, df_max: float) -> np.ndarray:
    """Degrees of freedom of ``var = own + rest`` when only ``own`` is estimated (with ``df_own``):
    ``df_own * (var / own)^2``, capped at ``df_max``; ``df_max`` where ``own`` is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(own > 0, df_own * (var / own) ** 2, df_max)
    return np.minimum(np.nan_to_num(df, nan=df_max), df_max)


def _placebo(d: Panel, s1: _StageOne, pre_periods: int, variance: str) -> pd.DataFrame | None:
    """Leave-out imputation of the untreated cells at horizons -pre_periods..-1."""
    untreated = ~d.treated
    with np.errstate(invalid="ignore"):
        rel = d.horizon
        hold = untreated & ~np.isnan(d.ft_obs) & (rel >= -pre_periods) & (rel <= -1)
    keep = untreated & ~hold
    hold &= np.bincount(d.u[keep], minlength=d.n_units)[d.u] > 0  # the unit keeps an untreated cell
    hold &= np.bincount(d.t[keep], minlength=d.n_periods)[d.t] > 0  # the period keeps an untreated cell
    if not hold.any():
        return None
    fe = TwoWayFE(d.u[keep], d.t[keep], d.n_units, d.n_periods)
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
    if variance == "cluster":
        u0, t0 = d.u[keep], d.t[keep]
        resid = d.y[keep] - alpha[u0] - lam[t0]
        cells = _cohort_period_cells(d, hold)
        var = _variance.cluster_variance(fe, resid, u0, t0, effect, u_h, t_h, cells, d.cluster, weights)
    else:
        var = _variance.iid_variance(fe, s1.sigma2, u_h, t_h, weights)
    return pd.DataFrame(
        {"horizon": h_values, "estimate": np.bincount(h_codes, weights=effect) / n_h, "se": sqrt_var(var), "n_obs": n_h}
    )

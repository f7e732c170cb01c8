"""Regressions with two-way fixed effects: the TWFE comparator and the BJS pre-trend test.

Both are OLS of an outcome on unit effects, period effects and a few indicator regressors,
computed by Frisch-Waugh-Lovell: the outcome and each regressor are residualised on the two-way
fixed effects (exactly, without dummy matrices), and the residuals regressed on each other.
Standard errors are clustered (CR1): the sandwich ``(X'X)^-1 (sum_c s_c s_c') (X'X)^-1`` with
``X`` the residualised regressors and ``s_c`` cluster ``c``'s sum of regressor-times-residual,
scaled by ``G/(G-1) * (n-1)/(n-K)`` with ``G`` clusters, ``n`` observations and ``K`` the number
of regressors plus ``T - 1`` period effects (the unit effects are nested in the clusters and not
counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, sparse, stats

from hbm_lib._validation import check_bool, check_level
from hbm_lib.staggered._fixed_effects import TwoWayFE, require_connected
from hbm_lib.staggered._panel import check_count, prepare, require_treated

__all__ = ["two_way_fixed_effects", "twfe_weights", "pretrend_test", "PretrendTest"]


def _fwl(fe: TwoWayFE, y, bins, k, cluster):
    """OLS of ``y`` on ``k`` indicators (``bins``: the indicator of each row, -1 for none) and the
    two-way fixed effects of ``fe`` (fitted on the same rows), with CR1 clustered covariance.
    Returns ``(beta, cov)``."""
    u, t, n_units, n_periods = fe.u, fe.t, fe.N, fe.T
    n = len(y)
    has = bins >= 0
    x = sparse.csc_matrix((np.ones(has.sum()), (np.flatnonzero(has), bins[has])), shape=(n, k))
    a_u = sparse.csr_matrix((np.ones(n), (u, np.arange(n))), shape=(n_units, n))
    a_t = sparse.csr_matrix((np.ones(n), (t, np.arange(n))), shape=(n_periods, n))
    g_a = np.column_stack([np.bincount(u, weights=y, minlength=n_units), (a_u @ x).toarray()])
    g_l = np.column_stack([np.bincount(t, weights=y, minlength=n_periods), (a_t @ x).toarray()])
    xa, xl = fe.solve(g_a, g_l)
    y_res = y - xa[u, 0] - xl[t, 0]

    def x_res(j: int) -> np.ndarray:
        return (bins == j).astype(float) - xa[u, j + 1] - xl[t, j + 1]

    xtx = np.empty((k, k))
    for j in range(k):
        xtx[:, j] = np.bincount(bins[has], weights=x_res(j)[has], minlength=k)
    xtx = (xtx + xtx.T) / 2
    eig = np.linalg.eigvalsh(xtx)
    if eig[0] <= 1e-9 * max(eig[-1], 1.0):
        raise ValueError(
            "the indicator regressors are collinear with the unit and period effects (e.g. every unit adopts "
            "in the same period and none is never treated), so their coefficients are not identified"
        )
    beta = linalg.solve(xtx, np.bincount(bins[has], weights=y_res[has], minlength=k), assume_a="pos")
    resid = y_res - sum(beta[j] * x_res(j) for j in range(k))
    n_clusters = int(cluster.max()) + 1
    scores = np.column_stack([np.bincount(cluster[u], weights=x_res(j) * resid, minlength=n_clusters) for j in range(k)])
    bread = np.linalg.inv(xtx)
    n_params = k + n_periods - 1
    used = len(np.unique(cluster[u]))
    factor = used / (used - 1) * (n - 1) / (n - n_params) if used > 1 and n > n_params else np.nan
    return beta, factor * bread @ (scores.T @ scores) @ bread


def two_way_fixed_effects(
    panel: pd.DataFrame,
    *,
    unit: str = "unit",
    time: str = "time",
    outcome: str = "outcome",
    first_treated: str = "first_treated",
    cluster: str | None = None,
    event_study: bool = False,
    pre_periods: int = 5,
    post_periods: int | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Two-way fixed-effects regression (static or event study), the comparator.

    OLS of the outcome on unit effects, period effects and treatment regressors, on *all*
    observations (module docstring for the computation and the clustered standard errors):

    * static (``event_study=False``): one regressor ``D_it = 1[t >= first_treated]``;
    * event study: dummies for the relative times ``r = t - first_treated`` in
      ``-pre_periods .. -2`` and ``0 .. post_periods`` (``post_periods`` defaults to the largest
      observed horizon), with ``r = -1`` the reference. Relative times beyond the window are binned
      into the end dummies: ``r < -pre_periods`` into the ``-pre_periods`` dummy and
      ``r > post_periods`` into the ``post_periods`` dummy; with ``pre_periods <= 1`` every ``r < 0``
      is in the reference. Dummies no observation falls into are dropped. The event study needs
      never-treated units: without them the relative-time dummies, the unit effects and the period
      effects are collinear, so the dummies are not identified.

    With effects that vary across cohorts or grow with time since adoption these coefficients are
    not averages of the effects: already-treated units serve as controls, and the static coefficient
    can be far from the ATT, even of the wrong sign. Use :func:`imputation_estimator` for estimates;
    this function is here to show the problem.

    Parameters
    ----------
    panel : pandas.DataFrame
        Long panel, as for :func:`imputation_estimator`.
    unit, time, outcome, first_treated : str
        Column names (same conventions).
    cluster : str, optional
        Column to cluster by, constant within each unit; default the unit.
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
    ...     "unit": ["a"] * 4 + ["b"] * 4,
    ...     "time": [0, 1, 2, 3] * 2,
    ...     "outcome": [1.0, 2.0, 6.0, 7.0, 5.0, 6.0, 7.0, 8.0],
    ...     "first_treated": [2] * 4 + [None] * 4,
    ... })
    >>> two_way_fixed_effects(panel)[["term", "estimate"]].round(10)
          term  estimate
    0  treated       3.0
    """
    level = check_level(level)
    event_study = check_bool(event_study, "event_study")
    pre_periods = check_count(pre_periods, "pre_periods")
    if post_periods is not None:
        post_periods = check_count(post_periods, "post_periods")
    d = prepare(panel, unit, time, outcome, first_treated, cluster)
    require_treated(d, first_treated)
    fe = TwoWayFE(d.u, d.t, d.n_units, d.n_periods)
    require_connected(fe, d, "observations")
    if event_study:
        bins, horizons = _event_bins(d, first_treated, pre_periods, post_periods)
        terms = [f"horizon_{r}" for r in horizons]
    else:
        bins, terms, horizons = np.where(d.treated, 0, -1), ["treated"], np.array([np.nan])
    beta, cov = _fwl(fe, d.y, bins, len(terms), d.cluster)
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    z = stats.norm.ppf(0.5 + level / 2)
    return pd.DataFrame({"term": terms, "horizon": horizons, "estimate": beta, "se": se, "lower": beta - z * se, "upper": beta + z * se})


def twfe_weights(
    panel: pd.DataFrame,
    *,
    unit: str = "unit",
    time: str = "time",
    first_treated: str = "first_treated",
) -> pd.DataFrame:
    """The weight of each treated (cohort, horizon) cell in the static two-way fixed-effects coefficient.

    The static coefficient is ``beta = sum_it Dres_it Y_it / sum_it Dres_it^2`` with ``Dres`` the
    treatment dummy residualised on unit and period effects (Frisch-Waugh-Lovell). Under parallel
    trends ``Y_it = alpha_i + lambda_t + D_it tau_it + e_it``, and ``Dres`` is orthogonal to the
    fixed effects, so ``beta = sum_{treated it} w_it tau_it + noise`` with
    ``w_it = Dres_it / sum_{treated} Dres``: a weighted sum of the effects whose weights add up to
    1 but need not be positive (de Chaisemartin and D'Haultfoeuille 2020; Borusyak, Jaravel and
    Spiess 2024). Long-run effects of early adopters typically get negative weights: they serve as
    controls for later adopters (Goodman-Bacon 2021). The ATT weights every treated observation
    equally, ``1 / n_treated``.

    Parameters
    ----------
    panel : pandas.DataFrame
        Long panel, as for :func:`two_way_fixed_effects` (no outcome needed).
    unit, time, first_treated : str
        Column names (same conventions).

    Returns
    -------
    pandas.DataFrame
        One row per treated (cohort, horizon) cell, sorted: ``first_treated``, ``horizon``,
        ``n_obs``, ``weight`` (the sum of the cell's ``w_it``; in a balanced panel every
        observation of a cell has the same weight, so ``beta`` is the sum over cells of ``weight``
        times the cell's mean effect, plus noise) and ``att_weight`` (``n_obs / n_treated``, the
        cell's weight in the ATT). ``weight`` sums to 1.

    Raises
    ------
    ValueError
        For the panels :func:`two_way_fixed_effects` refuses (e.g. a dummy collinear with the
        fixed effects).

    Examples
    --------
    Two units and three periods, ``a`` adopting in period 1 and ``b`` in period 2: ``a``'s second
    treated period gets weight -1/2, because ``a``, already treated, is ``b``'s control then.

    >>> import pandas as pd
    >>> panel = pd.DataFrame({"unit": ["a"] * 3 + ["b"] * 3, "time": [0, 1, 2] * 2,
    ...                       "first_treated": [1] * 3 + [2] * 3})
    >>> twfe_weights(panel)
       first_treated  horizon  n_obs  weight  att_weight
    0              1        0      1     1.0    0.333333
    1              1        1      1    -0.5    0.333333
    2              2        0      1     0.5    0.333333
    """
    d = prepare(panel, unit, time, None, first_treated)
    require_treated(d, first_treated)
    fe = TwoWayFE(d.u, d.t, d.n_units, d.n_periods)
    require_connected(fe, d, "observations")
    dummy = d.treated.astype(float)
    alpha, lam = fe.fit(dummy)
    resid = dummy - alpha[d.u] - lam[d.t]
    total = float(resid[d.treated].sum())
    if total <= 1e-9 * d.treated.sum():
        raise ValueError(
            "the treatment dummy is collinear with the unit and period effects (e.g. every unit adopts "
            "in the same period and none is never treated), so the coefficient and its weights are not identified"
        )
    cells = pd.DataFrame({first_treated: d.ft_obs[d.treated].astype(np.int64),
                          "horizon": d.horizon[d.treated].astype(np.int64), "w": resid[d.treated] / total})
    out = cells.groupby([first_treated, "horizon"], sort=True)["w"].agg(n_obs="size", weight="sum").reset_index()
    out["n_obs"] = out["n_obs"].astype(np.int64)
    out["att_weight"] = out["n_obs"] / d.treated.sum()
    return out


def _event_bins(d, first_treated: str, pre_periods: int, post_periods: int | None):
    """The relative-time dummy of each row (-1: the reference or never treated) and their horizons."""
    if not np.isnan(d.ft_unit).any():
        raise ValueError(
            f"event_study=True needs never-treated units ({first_treated!r} missing), and every unit is "
            "eventually treated: relative time = period - adoption period, so the relative-time dummies "
            "are collinear with the unit and period effects and not identified"
        )
    valid = ~np.isnan(d.ft_obs)
    rel = np.zeros(len(d.y), dtype=np.int64)
    rel[valid] = d.horizon[valid].astype(np.int64)
    post = int(rel[d.treated].max()) if post_periods is None else post_periods
    window = list(range(-pre_periods, -1)) + list(range(post + 1))
    lo = min(-pre_periods, -1)  # with pre_periods <= 1 every r < 0 is clipped to the reference -1
    position = {r: j for j, r in enumerate(window)}
    bin_of = np.array([position.get(r, -1) for r in range(lo, post + 1)])
    bins = np.where(valid, bin_of[np.clip(rel, lo, post) - lo], -1)
    used = np.unique(bins[bins >= 0])  # drop dummies no observation falls into
    remap = np.full(len(window) + 1, -1)
    remap[used] = np.arange(len(used))
    return remap[bins], np.array(window, dtype=np.int64)[used]


@dataclass(frozen=True)
class PretrendTest:
    """What :func:`pretrend_test` returns.

    Attributes
    ----------
    leads : pandas.DataFrame
        One row per lead ``k = 1..K`` (``k`` periods before adoption), with ``lead``,
        ``estimate`` (the coefficient of the indicator ``1[t - first_treated = -k]``), ``se``
        (clustered) and ``n_obs``.
    chi2, df, p_value : float, int, float
        The joint Wald test that every lead coefficient is 0: ``b' V^-1 b``, chi-square with ``df``
        (the number of leads) degrees of freedom under parallel trends and no anticipation.
    """

    leads: pd.DataFrame
    chi2: float
    df: int
    p_value: float


def pretrend_test(
    panel: pd.DataFrame,
    *,
    unit: str = "unit",
    time: str = "time",
    outcome: str = "outcome",
    first_treated: str = "first_treated",
    cluster: str | None = None,
    leads: int = 3,
) -> PretrendTest:
    """The pre-trend test of Borusyak, Jaravel and Spiess (2024, Section 4.4).

    On the *untreated* observations only (never-treated units, and eventually-treated units before
    adoption), regress the outcome on unit and period effects and on indicators of the last
    ``leads`` periods before adoption, ``1[t - first_treated = -k]`` for ``k = 1..leads``; then
    test that their coefficients are jointly zero with a Wald test on their clustered covariance.
    Under parallel trends and no anticipation the leads are 0; a trend or an anticipation effect
    in the last periods before adoption shows up in them. The test is separate from the
    estimation: the imputation estimates use all untreated observations whatever it finds. As
    ``did_imputation``'s help advises, use a few leads: each added lead costs power.

    Parameters
    ----------
    panel : pandas.DataFrame
        Long panel, as for :func:`imputation_estimator`.
    unit, time, outcome, first_treated, cluster : str
        Column names (same conventions; ``cluster`` defaults to the unit).
    leads : int, default 3
        Number of lead indicators, at least 1.

    Returns
    -------
    PretrendTest

    Examples
    --------
    >>> from hbm_lib.simulate import simulate_staggered_panel
    >>> panel, _ = simulate_staggered_panel(200, 12, 2, adoption_periods=(6, 8), seed=3)
    >>> test = pretrend_test(panel, unit="creator", time="period")
    >>> test.df, test.leads["lead"].tolist()
    (3, [1, 2, 3])
    >>> bool(test.p_value > 0.01)
    True
    """
    leads = check_count(leads, "leads")
    if leads < 1:
        raise ValueError("leads must be at least 1")
    d = prepare(panel, unit, time, outcome, first_treated, cluster)
    keep = ~d.treated
    rel = np.where(np.isnan(d.ft_obs), 0.0, d.horizon)[keep]
    bins = np.where((rel < 0) & (rel >= -leads), -rel.astype(np.int64) - 1, -1)
    n_obs = np.bincount(bins[bins >= 0], minlength=leads)
    if (n_obs == 0).any():
        raise ValueError(f"leads: no untreated observation lies {int(np.flatnonzero(n_obs == 0)[0]) + 1} period(s) before adoption")
    fe = TwoWayFE(d.u[keep], d.t[keep], d.n_units, d.n_periods)
    require_connected(fe, d, "untreated observations")
    beta, cov = _fwl(fe, d.y[keep], bins, leads, d.cluster)
    chi2 = float(beta @ np.linalg.solve(cov, beta))
    table = pd.DataFrame({"lead": np.arange(1, leads + 1), "estimate": beta, "se": np.sqrt(np.clip(np.diag(cov), 0, None)), "n_obs": n_obs})
    return PretrendTest(leads=table, chi2=chi2, df=leads, p_value=float(stats.chi2.sf(chi2, leads)))

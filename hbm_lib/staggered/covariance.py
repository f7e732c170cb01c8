"""The joint covariance of the imputation estimator's unit effects.

Every treated unit's estimate is linear in the outcomes, ``est_j = sum_it v_jit Y_it``: weight
``1/n_post_j`` on its own treated observations and ``-(x_a_ij + x_l_tj)`` on every untreated
observation ``(i, t)`` (``hbm_lib.staggered._variance``). The estimates share the fitted period
effects, so their errors are correlated: ``cov(est_j, est_k) = sum_it v_jit v_kit sigma_i^2``
under independent errors with variance ``sigma_i^2`` per unit. With ``x_a`` (units x treated
units) and ``x_l`` (periods x treated units) the untreated part is a sum of four matrix products,
``O(N J^2 + N T J)`` for ``N`` units, ``J`` treated units and ``T`` periods, never an
observations-by-units matrix.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from hbm_lib._validation import check_choice
from hbm_lib.staggered._panel import prepare
from hbm_lib.staggered._variance import _unit_solutions
from hbm_lib.staggered.imputation import _check_imputable, _StageOne

__all__ = ["unit_covariance"]

MAX_UNITS = 20_000  # J x J doubles: 3.2 GB at the limit


def unit_covariance(
    panel: pd.DataFrame,
    *,
    unit: str = "unit",
    time: str = "time",
    outcome: str = "outcome",
    first_treated: str = "first_treated",
    variance: Literal["unit", "pooled"] = "unit",
    error_variance: pd.Series | None = None,
) -> pd.DataFrame:
    """Covariance matrix of the imputation estimator's unit effects, under independent errors.

    The unit effects of :func:`hbm_lib.imputation_estimator` (its ``units`` table) are
    averages of ``Y_it - alpha_i - lambda_t`` that share the fitted period effects ``lambda_t``,
    so their errors are correlated across units: positively for units treated in the same
    periods. This returns their full covariance (module docstring for the computation), with the
    errors independent over time and across units, of variance ``sigma_i^2`` per unit. Its
    diagonal is the square of the ``se`` that ``imputation_estimator(..., variance=variance,
    unit_se="iid")`` reports. Stage 2 can use it
    (``hbm_lib.staggered.pool_unit_effects(estimates, cov=...)``) instead of treating the units'
    errors as independent.

    Parameters
    ----------
    panel : pandas.DataFrame
        Long panel, as for :func:`hbm_lib.imputation_estimator`.
    unit, time, outcome, first_treated : str
        Column names (same conventions).
    variance : {"unit", "pooled"}, default "unit"
        ``sigma_i^2`` estimated per unit from its stage-1 residuals, or one pooled value (as in
        ``imputation_estimator``).
    error_variance : pandas.Series, optional
        Known error variances, indexed by unit label (every unit of the panel, positive), used
        instead of estimates (``variance`` is then ignored): for simulation studies, where the
        true ones are known.

    Returns
    -------
    pandas.DataFrame
        Treated units by treated units, in the order of ``imputation_estimator(...).units``,
        labelled on both axes.

    Raises
    ------
    ValueError
        For the panels :func:`~hbm_lib.imputation_estimator` refuses, a bad
        ``error_variance``, or more than 20,000 treated units (the matrix would not fit in memory).

    Examples
    --------
    Two units adopting in period 2 and one never adopting, errors of variance 1: each adopter's
    estimate is its own before-after change minus the never-adopter's, so both share the
    never-adopter's noise (variance 1 of the 2 each has; correlation 0.5).

    >>> import pandas as pd
    >>> panel = pd.DataFrame({
    ...     "unit": ["a"] * 4 + ["b"] * 4 + ["c"] * 4,
    ...     "time": [0, 1, 2, 3] * 3,
    ...     "outcome": [1.0, 2.0, 6.0, 7.0, 5.0, 6.0, 7.0, 8.0, 2.0, 2.5, 3.0, 3.5],
    ...     "first_treated": [2] * 4 + [2] * 4 + [None] * 4,
    ... })
    >>> cov = unit_covariance(panel, error_variance=pd.Series(1.0, index=["a", "b", "c"]))
    >>> cov
            a    b
    unit
    a     2.0  1.0
    b     1.0  2.0
    """
    variance = check_choice(variance, "variance", ("unit", "pooled"))
    d = prepare(panel, unit, time, outcome, first_treated)
    _check_imputable(d, first_treated)
    s1 = _StageOne.fit(d, variance)
    sigma2 = s1.sigma2 if error_variance is None else _known(error_variance, d.labels)
    u1, t1 = d.u[d.treated], d.t[d.treated]
    n_post = np.bincount(u1, minlength=d.n_units)
    units = np.flatnonzero(n_post > 0)
    if len(units) > MAX_UNITS:
        raise ValueError(f"{len(units)} treated units: their covariance matrix would need {len(units) ** 2 * 8 / 1e9:.0f} GB; at most {MAX_UNITS}")
    fe = s1.fe
    x_l, _, _, _ = _unit_solutions(fe, u1, t1, units, n_post)
    own = np.zeros((d.n_units, len(units)))
    own[units, np.arange(len(units))] = 1.0
    x_a = fe.inv_n[:, None] * (own - fe.B @ x_l)  # (N, J)
    b_xl = fe.B @ x_l  # (N, J): sum over unit i's untreated periods of x_l
    s = sigma2[:, None]
    cross = x_a.T @ (s * b_xl)
    cov = (x_a.T @ (s * fe.n_i[:, None] * x_a)) + cross + cross.T + x_l.T @ ((fe.B.T @ sigma2)[:, None] * x_l)
    cov[np.diag_indices_from(cov)] += sigma2[units] / n_post[units]
    labels = pd.Index(d.labels[units], name=unit)
    return pd.DataFrame((cov + cov.T) / 2.0, index=labels, columns=labels.rename(None))


def _known(error_variance, labels: np.ndarray) -> np.ndarray:
    if not isinstance(error_variance, pd.Series):
        raise TypeError(f"error_variance must be a pandas Series indexed by unit label; got {type(error_variance).__name__}")
    missing = pd.Index(labels).difference(error_variance.index)
    if len(missing):
        raise ValueError(f"error_variance has no value for unit {missing[0]!r} ({len(missing)} unit(s) missing)")
    values = error_variance.reindex(labels).to_numpy(dtype=float)
    if not (np.isfinite(values) & (values > 0)).all():
        raise ValueError("error_variance must be positive and finite for every unit")
    return values

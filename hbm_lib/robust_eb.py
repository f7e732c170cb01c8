"""Robust empirical-Bayes confidence intervals (Armstrong, Kolesár and Plagborg-Møller 2022).

The empirical-Bayes intervals of :func:`hbm_lib.partial_pooling` cover the truth at their nominal
rate on average over units only if the true effects are normal around their group means. The
robust EBCI keeps the empirical-Bayes estimate and widens its interval just enough that the
*average* coverage over units holds for any distribution of the effects with the estimated second
moment and kurtosis, normal or not:

* :func:`robust_eb_intervals` estimates, shrinks and returns the intervals (the frame of
  :mod:`hbm_lib.pooling`, with the critical value of each unit);
* :func:`robust_critical_value` is the critical value ``cva(m2, kappa)``;
* :func:`worst_case_noncoverage` is its inverse: the largest average non-coverage of a given
  critical value over the distributions with those moments.

Written here rather than taken from a package: the authors' reference implementations are in R
(``ebci``) and Stata; no maintained Python package computes these intervals.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hbm_lib._validation import align, as_finite_1d, as_positive_1d, check_level
from hbm_lib.pooling import _check_inputs, _group_codes, _group_sums, _insert_groups

__all__ = ["robust_critical_value", "worst_case_noncoverage", "robust_eb_intervals"]


def robust_critical_value(m2: ArrayLike, kappa: ArrayLike = np.inf, *, level: float = 0.95) -> np.ndarray | float:
    """Critical value ``cva(m2, kappa)`` of the robust empirical-Bayes confidence interval.

    An empirical-Bayes estimate ``theta_hat = w * y + (1 - w) * mu`` misses ``theta`` by
    ``w * se * (Z + b)`` with ``Z ~ N(0, 1)`` and the *normalised bias* ``b = -(1 - w) (theta -
    mu) / (w * se)``, which is random over units. The interval ``theta_hat +/- chi * w * se``
    fails with probability ``r(b, chi) = P(|Z + b| > chi)`` for a unit with bias ``b``. Armstrong,
    Kolesár and Plagborg-Møller (2022) choose ``chi`` so that the *average* non-coverage is at most
    ``1 - level`` for every distribution of ``b`` with ``E[b^2] = m2`` and kurtosis
    ``E[b^4] / m2^2 <= kappa``:

    ``rho(m2, kappa, chi) = sup E[r(b, chi)]`` over those distributions, and
    ``cva = min {chi : rho(m2, kappa, chi) <= 1 - level}``.

    With ``t = b^2``, ``r0(t, chi) = Phi(-chi - sqrt t) + Phi(sqrt t - chi)`` is convex and then
    concave in ``t`` (convex near 0 iff ``chi^2 > 3``), so without the kurtosis constraint the
    supremum is the concave envelope of ``r0`` at ``m2``: ``r0(m2)`` if ``m2 >= t0``, else the chord
    from ``(0, r0(0))`` to the tangency point ``(t0, r0(t0))``, attained by ``t in {0, t0}``. That
    distribution has kurtosis ``t0 / m2``, so the constraint binds only if ``kappa * m2 < t0``; then
    the least favourable distribution puts mass on two points with both moments exactly matched,
    ``{m2 (1 - s), m2 (1 + (kappa - 1) / s)}`` with probabilities ``(kappa - 1, s^2) / (s^2 +
    kappa - 1)``, and ``s`` in ``(0, 1]`` is found by a grid search refined by golden sections.
    ``chi`` is then the root of ``rho = 1 - level`` (regula falsi), to about 1e-10.

    Limits (tested): ``m2 = 0`` gives the normal quantile (1.96 at 95%); ``kappa = 1`` (``b^2 =
    m2`` for every unit) gives ``sqrt`` of the non-central chi-square quantile with 1 degree of
    freedom and non-centrality ``m2``; an inactive kurtosis constraint gives the value with
    ``kappa = inf``; ``kappa >= 3`` is at least the parametric (normal-prior) critical value
    ``z * sqrt(1 + m2)``.

    Parameters
    ----------
    m2 : float or 1-d array-like
        Second moment(s) of the normalised bias, ``>= 0``. For an empirical-Bayes weight
        ``w = mu2 / (mu2 + se^2)`` it is ``se^2 / mu2 = 1 / w - 1``.
    kappa : float or 1-d array-like, default numpy.inf
        Kurtosis bound(s), ``>= 1``, broadcast against ``m2``; ``numpy.inf`` imposes none.
    level : float, default 0.95
        Average coverage to guarantee.

    Returns
    -------
    float or numpy.ndarray
        One critical value per element of the broadcast ``(m2, kappa)``; a float for scalars.

    Examples
    --------
    >>> round(robust_critical_value(0.0), 4)  # no bias: the normal quantile
    1.96
    >>> [round(float(c), 3) for c in robust_critical_value([1.0, 1.0, 1.0], [1.0, 3.0, np.inf])]
    [2.646, 2.812, 3.259]
    """
    m2_arr, kappa_arr = _moment_arrays(m2, kappa)
    alpha = 1.0 - check_level(level)
    out = _cva(m2_arr.ravel(), kappa_arr.ravel(), alpha).reshape(m2_arr.shape)
    return float(out) if out.ndim == 0 else out


def _moment_arrays(m2, kappa) -> tuple[np.ndarray, np.ndarray]:
    """``m2`` (finite, >= 0) and ``kappa`` (>= 1, inf allowed), each a number or a 1-d array, broadcast."""
    m2_arr = as_finite_1d(m2, "m2")
    if (m2_arr < 0).any():
        raise ValueError(f"m2 must be >= 0; got {m2_arr[m2_arr < 0][0]:g}")
    try:
        kappa_arr = np.asarray(kappa, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"kappa must be a number >= 1 or an array of them; got {kappa!r}") from None
    if kappa_arr.ndim > 1 or np.isnan(kappa_arr).any() or (kappa_arr < 1).any():
        raise ValueError(f"kappa must be >= 1 (numpy.inf for no bound on the kurtosis); got {kappa!r}")
    if np.ndim(m2) == 0:
        m2_arr = m2_arr.reshape(())
    try:
        m2_b, kappa_b = np.broadcast_arrays(m2_arr, kappa_arr)
    except ValueError:
        raise ValueError(f"kappa must be one value or one per m2; got {kappa_arr.size} for {m2_arr.size}") from None
    return m2_b.astype(float), kappa_b.astype(float)


def worst_case_noncoverage(m2: ArrayLike, kappa: ArrayLike, critical_value: ArrayLike) -> np.ndarray | float:
    """``rho(m2, kappa, chi)``: the largest average non-coverage of ``theta_hat +/- chi * w * se``.

    The supremum, over all distributions of the normalised bias with second moment ``m2`` and
    kurtosis at most ``kappa``, of the share of units the interval misses
    (:func:`robust_critical_value` defines it and inverts it). With ``chi = z * sqrt(1 + m2)``
    it says how badly the parametric, normal-prior interval can under-cover when the true effects
    have the right variance and kurtosis but the wrong shape.

    Parameters
    ----------
    m2 : float or 1-d array-like
        Second moment(s) of the normalised bias, ``>= 0``.
    kappa : float or 1-d array-like
        Kurtosis bound(s), ``>= 1`` (``numpy.inf``: none).
    critical_value : float or 1-d array-like
        The interval's half-width in units of ``w * se``, ``> 0``.

    Returns
    -------
    float or numpy.ndarray

    Examples
    --------
    >>> from statistics import NormalDist
    >>> z = NormalDist().inv_cdf(0.975)
    >>> round(worst_case_noncoverage(0.0, 3.0, z), 3)  # no bias: the nominal 5%
    0.05
    >>> round(worst_case_noncoverage(4.0, 3.0, z * 5**0.5), 3)  # the normal-prior interval at w = 1/5
    0.064
    """
    m2_arr, kappa_arr = _moment_arrays(m2, kappa)
    chi = as_positive_1d(critical_value, "critical_value")
    try:
        m2_b, kappa_b, chi_b = np.broadcast_arrays(m2_arr, kappa_arr, chi.reshape(()) if np.ndim(critical_value) == 0 else chi)
    except ValueError:
        raise ValueError("m2, kappa and critical_value must be numbers or arrays of one length") from None
    flat = [a.ravel().astype(float) for a in (m2_b, kappa_b, chi_b)]
    out = np.where(flat[1] == 1.0, _r0(flat[0], flat[2]), _rho(*flat)).reshape(m2_b.shape)
    return float(out) if out.ndim == 0 else out


def robust_eb_intervals(
    y: ArrayLike,
    se: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    units: ArrayLike | None = None,
    level: float = 0.95,
    kappa: float | None = None,
    weights: ArrayLike | None = None,
) -> pd.DataFrame:
    """Empirical-Bayes estimates with robust EBCIs (Armstrong, Kolesár and Plagborg-Møller 2022).

    The normal-normal model's intervals are right on average over units only if the true effects
    are normal around their group means. The robust EBCI keeps the empirical-Bayes estimate
    ``theta_hat = pooled_mean + w * (y - pooled_mean)``, ``w = mu2 / (mu2 + se^2)``, and widens
    its interval to ``theta_hat +/- cva(se^2 / mu2, kappa) * w * se`` (:func:`robust_critical_value`),
    which covers at least ``level`` of the units on average for *any* distribution of
    ``theta - pooled_mean`` with second moment ``mu2`` and kurtosis at most ``kappa``, as long as
    those do not depend on ``se``.

    The moments are estimated as in the paper, from the residuals ``e = y - pooled_mean``
    (``pooled_mean`` the ``weights``-weighted mean of each group): ``mu2`` by the weighted mean of
    ``e^2 - se^2`` and the fourth moment by that of ``e^4 - 6 se^2 e^2 + 3 se^4``, unbiased
    given the means; then the paper's finite-sample correction ("posterior mean truncation")
    keeps them away from the boundary: with ``o`` the weights, ``mu2 >= 2 sum(o^2 se^4) /
    (sum(o) sum(o se^2))`` and ``kappa >= 1 + 32 sum(o^2 se^8) / (sum(o) sum(o se^4)) / mu2^2``.
    The paper's other choices (length-optimal shrinkage, t-statistic shrinkage) are not
    implemented; the estimate is the usual empirical-Bayes one.

    Parameters
    ----------
    y, se : array-like
        Unit estimates and their positive standard errors (at least 3 units).
    groups : array-like, optional
        One group label per unit: each unit is shrunk towards its own group's mean (the paper's
        regression on group indicators).
    units : array-like, optional
        Unit labels.
    level : float, default 0.95
        Average coverage of the intervals.
    kappa : float, optional
        Kurtosis bound to use (``numpy.inf``: none); estimated from the data when omitted.
    weights : array-like, optional
        Positive weights of the units in the group means and the moment estimates (default
        equal; ``1 / se**2`` are precision weights, which the paper uses in its application).

    Returns
    -------
    pandas.DataFrame
        Indexed by unit, with ``group`` (if given), ``estimate``, ``sd`` (``w * se``, the sd of
        the estimate given ``theta``), ``lower``, ``upper``, ``weight`` (``w``), ``pooled_mean``
        and ``critical_value``. ``attrs`` holds the moments used: ``mu2``, ``kappa`` and the
        uncorrected estimates ``mu2_raw`` and ``kappa_raw``.

    Examples
    --------
    >>> out = robust_eb_intervals([0.0, 4.0, 1.0, -1.0], [1.0, 1.0, 1.0, 1.0], kappa=np.inf)
    >>> round(out.attrs["mu2"], 3), out["weight"].round(3).tolist()
    (2.5, [0.714, 0.714, 0.714, 0.714])
    >>> out["critical_value"].round(3).tolist()  # cva(m2 = 1 / 2.5, inf)
    [2.4, 2.4, 2.4, 2.4]
    """
    y_arr, se_arr, labels, groups = _check_inputs(y, se, units, groups, min_length=3)
    level = check_level(level)
    codes, categories = _group_codes(groups, len(y_arr))
    omega = np.ones_like(y_arr) if weights is None else _check_weights(weights, y, len(y_arr))
    moments = _eb_moments(y_arr, se_arr, codes, omega)
    if kappa is not None:
        kappa = float(kappa)
        if np.isnan(kappa) or kappa < 1:
            raise ValueError(f"kappa must be >= 1 (numpy.inf for no bound); got {kappa}")
        moments["kappa"] = kappa
    mu2 = moments["mu2"]
    w = mu2 / (mu2 + se_arr**2)
    pooled_mean = moments["pooled_mean"]
    est = pooled_mean + w * (y_arr - pooled_mean)
    cv = _cva_interpolated(se_arr**2 / mu2, moments["kappa"], 1.0 - level)
    out = pd.DataFrame(
        {"estimate": est, "sd": w * se_arr, "lower": est - cv * w * se_arr, "upper": est + cv * w * se_arr,
         "weight": w, "pooled_mean": pooled_mean, "critical_value": cv},
        index=labels,
    )
    _insert_groups(out, codes, categories, groups)
    out.attrs.update({k: float(moments[k]) for k in ("mu2", "kappa", "mu2_raw", "kappa_raw")})
    return out


# --------------------------------------------------------------------------------------------
# robust EBCI: moments and critical values (Armstrong, Kolesár and Plagborg-Møller 2022)


def _check_weights(weights, y, n: int) -> np.ndarray:
    if isinstance(weights, pd.Series) and isinstance(y, pd.Series):
        weights = align(y=y, weights=weights)["weights"]
    omega = as_positive_1d(weights, "weights")
    if len(omega) != n:
        raise ValueError(f"weights must have one value per unit: expected {n}, got {len(omega)}")
    return omega


def _eb_moments(y, se, codes, omega) -> dict:
    """Group means, and the second moment and kurtosis of theta around them (paper's estimators)."""
    sum_omega = _group_sums(omega, codes)
    pooled_mean = (_group_sums(omega * y, codes) / sum_omega)[codes]
    e2, s2 = (y - pooled_mean) ** 2, se**2
    mean = lambda x: float(np.sum(omega * x) / np.sum(omega))  # noqa: E731
    mu2_raw = mean(e2 - s2)
    mu4_raw = mean(e2**2 - 6.0 * s2 * e2 + 3.0 * s2**2)
    # posterior mean truncation: bounds of the order of the estimates' sampling sd under mu2 = 0
    mu2_floor = 2.0 * np.sum(omega**2 * s2**2) / (np.sum(omega) * np.sum(omega * s2))
    mu4_floor = 32.0 * np.sum(omega**2 * s2**4) / (np.sum(omega) * np.sum(omega * s2**2))
    mu2 = max(mu2_raw, float(mu2_floor))
    kappa = max(mu4_raw / mu2**2, 1.0 + float(mu4_floor) / mu2**2)
    return {"pooled_mean": pooled_mean, "mu2": mu2, "kappa": kappa, "mu2_raw": mu2_raw,
            "kappa_raw": mu4_raw / mu2_raw**2 if mu2_raw > 0 else np.nan}


_CVA_SPACING = 0.1  # interpolation nodes every 0.1 in log m2 (16 to 128 of them) ...
_CVA_NODES = (16, 128)  # ... when there are more distinct values of m2 than the nodes would be
_S_GRID = np.geomspace(1e-4, 1.0, 192)  # the two-point family's parameter s, searched on this grid
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def _cva_interpolated(m2: np.ndarray, kappa: float, alpha: float) -> np.ndarray:
    """:func:`_cva` at every value of ``m2``: exactly at each distinct value when they are few, else
    through a monotone (PCHIP) interpolant in ``log m2`` (relative error below 1e-4, tested)."""
    values, inverse = np.unique(m2, return_inverse=True)
    x = np.log(np.maximum(values, 1e-300))
    n_nodes = int(np.clip(np.ceil((x[-1] - x[0]) / _CVA_SPACING), *_CVA_NODES))
    if len(values) <= n_nodes:
        return _cva(values, np.full_like(values, kappa), alpha)[inverse]
    from scipy.interpolate import PchipInterpolator

    nodes = np.linspace(x[0], x[-1], n_nodes)
    at_nodes = _cva(np.exp(nodes), np.full_like(nodes, kappa), alpha)
    return PchipInterpolator(nodes, at_nodes)(x)[inverse]


def _cva(m2: np.ndarray, kappa: np.ndarray, alpha: float) -> np.ndarray:
    """Root in ``chi`` of ``rho(m2, kappa, chi) = alpha``, elementwise (1-d arrays)."""
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    # kappa = 1 (b^2 = m2 for every unit) gives the smallest value: a bracket's lower end
    lo = _root_decreasing(lambda c: _r0(m2, c) - alpha, np.full_like(m2, z), z + np.sqrt(m2) + 2.0)
    out = lo.copy()
    todo = (kappa > 1.0) & (m2 > 0.0)
    if todo.any():
        m, k = m2[todo], kappa[todo]
        excess = lambda c: _rho(m, k, c) - alpha  # noqa: E731
        a, b = lo[todo], lo[todo] + 1.0
        for _ in range(200):  # widen until rho(b) <= alpha
            wide = excess(b) > 0
            if not wide.any():
                break
            b = np.where(wide, b + 2.0 * (b - a), b)
        out[todo] = _root_decreasing(excess, a, b)
    return out


def _rho(m2, kappa, chi):
    """Largest average non-coverage over distributions of b^2 with mean m2 and kurtosis <= kappa."""
    t0 = _tangency(chi)
    base = _r0(0.0, chi)
    concave = m2 >= t0
    with np.errstate(divide="ignore", invalid="ignore"):
        chord = base + m2 * (_r0(t0, chi) - base) / t0
    out = np.where(concave, _r0(m2, chi), chord)
    with np.errstate(invalid="ignore"):  # inf * 0 when m2 = 0: then m2 >= t0 or the chord is exact
        binds = ~concave & (m2 > 0) & (kappa * m2 < t0)
    if binds.any():
        out[binds] = _two_point_max(m2[binds], kappa[binds], chi[binds])
    return out


def _two_point_max(m2, kappa, chi):
    """Max over s in (0, 1] of E r0 under the two-point law with both moments matched."""
    grid = _two_point(_S_GRID[:, None], m2, kappa, chi)
    k = np.argmax(grid, axis=0)
    a = _S_GRID[np.maximum(k - 1, 0)]
    b = _S_GRID[np.minimum(k + 1, len(_S_GRID) - 1)]
    best = grid[k, np.arange(len(k))]
    # golden sections within the two grid cells around the best node: one new evaluation each
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = _two_point(c, m2, kappa, chi), _two_point(d, m2, kappa, chi)
    for _ in range(30):  # the bracket shrinks to 0.618^30 = 5e-7 of two cells
        left = fc > fd  # the maximum lies in [a, d]: d becomes the new b, c the new d
        a, b = np.where(left, a, c), np.where(left, d, b)
        new = np.where(left, b - _GOLDEN * (b - a), a + _GOLDEN * (b - a))
        f_new = _two_point(new, m2, kappa, chi)
        c, d, fc, fd = np.where(left, new, d), np.where(left, c, new), np.where(left, f_new, fd), np.where(left, fc, f_new)
        best = np.maximum(best, f_new)
    return np.maximum(best, np.maximum(fc, fd))


def _two_point(s, m2, kappa, chi):
    """E r0 when b^2 is m2 (1 - s) w.p. (kappa - 1) / (s^2 + kappa - 1), else m2 (1 + (kappa - 1) / s)."""
    q = s**2 / (s**2 + kappa - 1.0)
    return (1.0 - q) * _r0(m2 * (1.0 - s), chi) + q * _r0(m2 * (1.0 + (kappa - 1.0) / s), chi)


def _r0(t, chi):
    """Non-coverage P(|Z + b| > chi) of a unit with b^2 = t."""
    root = np.sqrt(t)
    return _ndtr(-chi - root) + _ndtr(root - chi)


def _ndtr(x):
    """The standard normal cdf (SciPy's, imported on first use: pooling alone needs no SciPy)."""
    global _ndtr
    from scipy.special import ndtr

    _ndtr = ndtr
    return ndtr(x)


def _phi(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def _tangency(chi):
    """t0(chi): where the line from (0, r0(0)) touches r0 (0 where r0 is concave, chi^2 <= 3)."""
    out = np.zeros_like(chi)
    convex = chi**2 > 3.0
    if convex.any():
        c = chi[convex]
        base = _r0(0.0, c)

        def gap(t):  # chord slope minus tangent slope, times t: negative below t0, positive above
            root = np.sqrt(t)
            return t * (_phi(root - c) - _phi(root + c)) / (2.0 * root) - (_r0(t, c) - base)

        lo, hi = c**2 - 3.0, 2.0 * c**2 + 1.0
        for _ in range(200):
            low = gap(hi) > 0
            if not low.any():
                break
            lo, hi = np.where(low, hi, lo), np.where(low, 2.0 * hi, hi)
        out[convex] = _root_decreasing(gap, np.maximum(lo, 1e-12 * c**2), hi)
    return out


def _root_decreasing(f, a, b, *, rtol: float = 1e-13, iterations: int = 100):
    """Vectorised Illinois (modified regula falsi) root of a decreasing ``f`` with ``f(a) >= 0 >= f(b)``."""
    fa, fb = f(a), f(b)
    a, b = np.array(a, dtype=float), np.array(b, dtype=float)
    last = np.zeros(len(a), dtype=int)  # which end moved last: -1 a, +1 b
    for _ in range(iterations):
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(fa > fb, b - fb * (b - a) / (fb - fa), 0.5 * (a + b))
        c = np.clip(np.where(np.isfinite(c), c, 0.5 * (a + b)), a, b)
        fc = f(c)
        move_b = fc < 0
        a, b = np.where(move_b, a, c), np.where(move_b, c, b)
        fa = np.where(move_b, np.where(last == 1, fa / 2.0, fa), fc)
        fb = np.where(move_b, fc, np.where(last == -1, fb / 2.0, fb))
        last = np.where(move_b, 1, -1)
        if np.all((b - a <= rtol * np.abs(b)) | (fc == 0)):
            break
    return np.where(fc == 0, c, 0.5 * (a + b))

"""The exact posterior of the beta-binomial hyperparameters on an adaptive 2-d grid.

:class:`BetaBinomialGrid` evaluates ``log p(logit(phi), log_kappa | y)`` and finds the ranges that
hold the posterior; ``hbm_lib.models.binomial.grid_posterior`` places the grid and draws
from it. :func:`log_rising` (the log rising factorial, without cancellation) is shared with the
beta-binomial pmf.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit as _expit
from scipy.special import gammaln as _gammaln

# relative log density below which the grid treats the posterior as negligible (exp(-14) ~ 8e-7)
GRID_DROP = 14.0
_GRID_U_LIMIT = 40.0  # |logit(phi)|
_GRID_T_LIMITS = (-60.0, 80.0)  # log_kappa
_GRID_COARSE = 32  # cells per coarse evaluation
# above this, log Gamma(x + m) - log Gamma(x) is computed from Stirling's series (no cancellation)
_STIRLING_FROM = 1e5


class BetaBinomialGrid:
    """The log posterior of ``(u, t) = (logit(phi), log_kappa)`` and the range searches."""

    def __init__(self, y: np.ndarray, n: np.ndarray) -> None:
        keep = n > 0  # variants without trials do not inform (phi, kappa)
        self.y = y[keep].astype(float)
        self.n = n[keep].astype(float)
        # logit of the pooled rate (smoothed): where the search for phi starts
        self.u0 = float(np.log((self.y.sum() + 0.5) / ((self.n - self.y).sum() + 0.5)))

    def log_density(self, u: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Unnormalised ``log p(u, t | y)`` for ``u`` of shape (rows, cells) and ``t`` (rows,)."""
        t = np.asarray(t, dtype=float)[:, None]
        kappa = np.exp(t)
        a = _expit(u) * kappa
        b = _expit(-u) * kappa
        # hyperprior in (phi, log_kappa): -t/2; Jacobian of phi = expit(u): log phi + log(1 - phi)
        out = -0.5 * t - np.logaddexp(0.0, -u) - np.logaddexp(0.0, u)
        # sum over variants of log B(a + y, b + n - y) - log B(a, b), as rising factorials
        out += _sum_log_rising(a, self.y) + _sum_log_rising(b, self.n - self.y)
        out -= _sum_log_rising(kappa, self.n)
        return out

    def zoom_rows(
        self, t: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, max_rounds: int = 12
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``t``, adjust ``[lo, hi]`` of ``u`` to the region within the drop of its max."""
        lo = lo.astype(float).copy()
        hi = hi.astype(float).copy()
        active = np.ones(len(t), dtype=bool)
        m = _GRID_COARSE
        for _ in range(max_rounds):
            if not active.any():
                break
            idx = np.flatnonzero(active)
            step = (hi[idx] - lo[idx]) / m
            u = lo[idx, None] + (np.arange(m) + 0.5) * step[:, None]
            logp = self.log_density(u, t[idx])
            keep = logp > logp.max(axis=1, keepdims=True) - GRID_DROP
            first = np.argmax(keep, axis=1)
            last = m - 1 - np.argmax(keep[:, ::-1], axis=1)
            new_lo, new_hi, changed = _adjust_range(
                lo[idx], hi[idx], step, first, last, m, -_GRID_U_LIMIT, _GRID_U_LIMIT
            )
            lo[idx], hi[idx] = new_lo, new_hi
            active[idx] = changed
        return lo, hi

    def find_log_kappa_range(self, *, max_rounds: int = 16):
        """Range of ``log_kappa`` holding the posterior, and per-row ``u`` ranges on a coarse grid."""
        m = _GRID_COARSE
        t_lo, t_hi = -5.0, 15.0
        lo = hi = None
        for _ in range(max_rounds):
            step = (t_hi - t_lo) / m
            t = t_lo + (np.arange(m) + 0.5) * step
            if lo is None:
                lo = np.full(m, self.u0 - 8.0)
                hi = np.full(m, self.u0 + 8.0)
            lo, hi = self.zoom_rows(t, lo, hi)
            u_step = (hi - lo) / m
            u = lo[:, None] + (np.arange(m) + 0.5) * u_step[:, None]
            logp = self.log_density(u, t)
            peak = logp.max()
            with np.errstate(divide="ignore"):  # rows far out may underflow to 0 mass
                row_log_mass = np.log(np.exp(logp - peak).sum(axis=1)) + peak + np.log(u_step)
            keep = row_log_mass > row_log_mass.max() - GRID_DROP
            first = int(np.argmax(keep))
            last = int(m - 1 - np.argmax(keep[::-1]))
            (new_lo,), (new_hi,), (changed,) = _adjust_range(
                np.array([t_lo]), np.array([t_hi]), np.array([step]), np.array([first]),
                np.array([last]), m, *_GRID_T_LIMITS,
            )
            if not changed:
                break
            # carry the row ranges over to the new rows (constant beyond the old ones)
            new_t = new_lo + (np.arange(m) + 0.5) * (new_hi - new_lo) / m
            lo, hi = np.interp(new_t, t, lo), np.interp(new_t, t, hi)
            t_lo, t_hi = float(new_lo), float(new_hi)
        return t_lo, t_hi, t, lo, hi


def _adjust_range(lo, hi, step, first, last, m, lower_limit, upper_limit):
    """One step of the range search for several ranges at once.

    ``first`` and ``last`` are the first and last of ``m`` cells whose value is within the drop of
    the maximum. A range whose region touches an end is doubled on that side (up to the limit);
    otherwise, if the region plus two cells on each side covers less than half of it, it is cut
    down to that. Returns the new ``lo``, ``hi`` and whether each range changed.
    """
    width = hi - lo
    grow_lo = (first == 0) & (lo > lower_limit)
    grow_hi = (last == m - 1) & (hi < upper_limit)
    shrunk_lo = lo + np.maximum(first - 2, 0) * step
    shrunk_hi = lo + np.minimum(last + 3, m) * step
    shrink = ~(grow_lo | grow_hi) & (shrunk_hi - shrunk_lo < 0.5 * width)
    new_lo = np.where(grow_lo, np.maximum(lo - width, lower_limit), np.where(shrink, shrunk_lo, lo))
    new_hi = np.where(grow_hi, np.minimum(hi + width, upper_limit), np.where(shrink, shrunk_hi, hi))
    return new_lo, new_hi, grow_lo | grow_hi | shrink


def log_rising(x: np.ndarray, m: float) -> np.ndarray:
    """``log Gamma(x + m) - log Gamma(x)`` for ``x > 0`` and a count ``m >= 0``, without cancellation.

    The log of the rising factorial ``x (x + 1) ... (x + m - 1)``. For large ``x`` the two
    log-gammas are huge and nearly equal, and their difference loses digits (8 of them at
    ``x = 1e6``); there Stirling's series ``log Gamma(z) = (z - 1/2) log z - z + log(2 pi)/2 +
    1/(12 z) - 1/(360 z^3) + ...`` gives, with ``log(x + m) = log x + log1p(m/x)``::

        (x + m - 1/2) log1p(m/x) + m log x - m - m / (12 x (x + m))

    whose error (from the ``1/(360 z^3)`` terms) is below 1e-16 from ``x = 1e5`` on.
    """
    return _sum_log_rising(x, np.array([m]))


def _sum_log_rising(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``sum_m [log Gamma(x + m) - log Gamma(x)]`` over ``counts``, as in :func:`log_rising`.

    Faster than summing :func:`log_rising`: ``log Gamma(x)`` and ``log x`` are computed once,
    equal counts once (times their multiplicity), and zero counts are skipped (they contribute 0).
    """
    x = np.asarray(x, dtype=float)
    counts = np.asarray(counts, dtype=float)
    counts, repeats = np.unique(counts[counts > 0], return_counts=True)
    out = np.zeros(x.shape)
    if not len(counts):
        return out
    big = x > _STIRLING_FROM
    small = ~big
    if small.any():
        xs = x[small]
        total = -float(repeats.sum()) * _gammaln(xs)
        for m, k in zip(counts, repeats):
            total += k * _gammaln(xs + m) if k > 1 else _gammaln(xs + m)
        out[small] = total
    if big.any():
        xb = x[big]
        total = float(repeats @ counts) * np.log(xb)
        for m, k in zip(counts, repeats):
            term = (xb + (m - 0.5)) * np.log1p(m / xb) - m * (1.0 + 1.0 / (12.0 * xb * (xb + m)))
            total += k * term if k > 1 else term
        out[big] = total
    return out



"""Standard errors of the imputation estimator.

Every estimate is linear in the outcomes, ``sum_it v_it Y_it``, with ``v = w`` on the treated
observations it averages (``w`` its averaging weights) and ``v = -Z0 x`` on the untreated ones,
where ``(Z0'Z0) x = Z1' w`` (``Z0``, ``Z1``: the fixed-effects design on untreated and treated
observations). With two-way fixed effects ``x = (x_a, x_l)`` has one value per unit and one per
period, so ``v_it = -(x_a_i + x_l_t)`` is never formed observation by observation.

* :func:`cluster_variance`: the conservative variance estimator of Borusyak, Jaravel and Spiess
  (2024, Theorem 3 and Section 4.3), clustered: ``sum_c (sum_{it in c} v_it e_it)^2`` with
  ``e_it`` the stage-1 residual on untreated observations and ``tau_it - tau_bar`` on treated ones,
  where ``tau_bar`` averages the estimated effects of the estimand's cohort-by-period cell with the
  cluster-adjusted weights of their Section 4.3 (as in their Stata command ``did_imputation``). It
  allows any correlation of the errors within a cluster, serial correlation included.
* :func:`iid_variance`: ``sum_it v_it^2 sigma_i^2``, exact for independent errors with a variance
  per unit (or one pooled variance); too small when the errors are serially correlated.
* :func:`unit_variances`: the variance of each treated unit's own average effect. Clustering
  cannot estimate the part that comes from the unit's own errors (one cluster), so that part is
  modelled (independent errors, or a stationary AR(1) with the autocorrelation estimated from all
  units' residuals); the part from every other unit's errors, through the fixed effects, is
  clustered in the AR(1) version.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse

from hbm_lib.staggered._fixed_effects import TwoWayFE


def _solve(fe: TwoWayFE, u_h: np.ndarray, t_h: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray]:
    """``x = (Z0'Z0)^- Z1' w`` for each column of the sparse ``weights`` over the cells ``(u_h, t_h)``."""
    n_h = len(u_h)
    cells = np.arange(n_h)
    a_u = sparse.csr_matrix((np.ones(n_h), (u_h, cells)), shape=(fe.N, n_h))
    a_t = sparse.csr_matrix((np.ones(n_h), (t_h, cells)), shape=(fe.T, n_h))
    return fe.solve((a_u @ weights).toarray(), (a_t @ weights).toarray())


def iid_variance(fe: TwoWayFE, sigma2: np.ndarray, u_h: np.ndarray, t_h: np.ndarray, weights) -> np.ndarray:
    """Variance of ``sum_h w_h (Y_h - Y_hat_h(0))`` for each column of ``weights``, independent errors.

    ``sigma2``: error variance per unit. The imputation part ``sum_i sigma_i^2 sum_{t in U_i}
    (x_a_i + x_l_t)^2`` is expanded so that nothing of size cells x columns is formed.
    """
    x_a, x_l = _solve(fe, u_h, t_h, weights)
    own = np.asarray(weights.multiply(weights).T @ sigma2[u_h]).ravel()
    imputed = (sigma2 * fe.n_i) @ x_a**2 + 2.0 * np.sum(sigma2[:, None] * x_a * (fe.B @ x_l), axis=0) + (fe.B.T @ sigma2) @ x_l**2
    return own + imputed


def cluster_variance(
    fe: TwoWayFE,
    resid0: np.ndarray,
    u0: np.ndarray,
    t0: np.ndarray,
    tau1: np.ndarray,
    u1: np.ndarray,
    t1: np.ndarray,
    cell1: np.ndarray,
    cluster: np.ndarray,
    weights,
) -> np.ndarray:
    """BJS's conservative clustered variance for each column of the sparse ``weights`` (n1 x K).

    ``resid0`` are the stage-1 residuals at the untreated cells ``(u0, t0)``, ``tau1`` the
    estimated effects at the treated cells ``(u1, t1)``, ``cell1`` their cohort-by-period cell and
    ``cluster`` the cluster code of each unit.
    """
    n_clusters = int(cluster.max()) + 1
    weights = sparse.csc_matrix(weights)
    x_a, x_l = _solve(fe, u1, t1, weights)
    residuals = sparse.csr_matrix((resid0, (u0, t0)), shape=(fe.N, fe.T))
    resid_sum = np.asarray(residuals.sum(axis=1)).ravel()  # ~0: residuals sum to zero within a unit
    untreated = -(x_a * resid_sum[:, None] + residuals @ x_l)  # sum_t v_it e_it, unit by estimand
    by_cluster = sparse.csr_matrix((np.ones(fe.N), (cluster, np.arange(fe.N))), shape=(n_clusters, fe.N))
    untreated = by_cluster @ untreated
    cl1 = cluster[u1]
    _, pair = np.unique(cl1.astype(np.int64) * (int(cell1.max()) + 1) + cell1, return_inverse=True)
    out = np.empty(weights.shape[1])
    for k in range(weights.shape[1]):
        lo, hi = weights.indptr[k], weights.indptr[k + 1]
        idx, w = weights.indices[lo:hi], weights.data[lo:hi]
        # Section 4.3: tau_bar of a cell weights each effect by w times its cluster's total w in the cell
        share = np.bincount(pair[idx], weights=w)[pair[idx]] * w
        total = np.bincount(cell1[idx], weights=share)
        mean = np.divide(np.bincount(cell1[idx], weights=share * tau1[idx]), total, out=np.zeros_like(total), where=total != 0)
        treated = np.bincount(cl1[idx], weights=w * (tau1[idx] - mean[cell1[idx]]), minlength=n_clusters)
        out[k] = float(np.sum((treated + untreated[:, k]) ** 2))
    return out


def _unit_solutions(fe: TwoWayFE, u1: np.ndarray, t1: np.ndarray, units: np.ndarray, n_post: np.ndarray):
    """``x_l`` (T x J) and ``x_a`` of each treated unit itself, for the weights of its own average."""
    J = len(units)
    col = np.full(fe.N, -1)
    col[units] = np.arange(J)
    g_l = sparse.csr_matrix((1.0 / n_post[u1], (t1, col[u1])), shape=(fe.T, J)).toarray()
    b_j = fe.B[units].T.tocsr()  # (T, J): untreated periods of each treated unit
    n_j = fe.n_i[units]
    rhs = g_l - b_j.multiply(1.0 / n_j[None, :]).toarray()
    x_l = np.zeros((fe.T, J))
    if fe.chol is not None:
        x_l[fe.free] = linalg.cho_solve(fe.chol, rhs[fe.free])
    bx = np.asarray(b_j.multiply(x_l).sum(axis=0)).ravel()  # b_j' x_l
    return x_l, (1.0 - bx) / n_j, b_j, g_l


def unit_variances_iid(fe, sigma2, u1, t1, units: np.ndarray, n_post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact variance of each treated unit's mean effect under independent errors, ``O(N T^2)``,
    and the part of it that comes from the unit's own errors (``sigma_j^2`` times a constant).

    For unit ``j`` the weights are ``1/n_post_j`` on its treated cells, so ``Z1'w`` is ``e_j`` in the
    unit block and the unit's treated-period indicator over ``n_post_j`` in the period block. After
    elimination, every other unit ``i`` has ``x_a_i = -mean of x_l over its untreated periods``, so
    their total contribution is the quadratic form ``x_l' M x_l`` with the one matrix
    ``M = sum_i sigma_i^2 (diag(b_i) - b_i b_i' / n_i)``; unit ``j``'s own term is corrected
    separately.
    """
    x_l, x_a, b_j, _ = _unit_solutions(fe, u1, t1, units, n_post)
    n_j = fe.n_i[units]
    m = np.diag(fe.B.T @ sigma2) - (fe.B.T @ fe.B.multiply((sigma2 * fe.inv_n)[:, None]).tocsr()).toarray()
    quad = np.sum(x_l * (m @ x_l), axis=0)
    bx = np.asarray(b_j.multiply(x_l).sum(axis=0)).ravel()
    bx2 = np.asarray(b_j.multiply(x_l**2).sum(axis=0)).ravel()  # sum of x_l^2 over j's untreated periods
    s_j = sigma2[units]
    in_m = s_j * (bx2 - bx**2 / n_j)
    own = s_j / n_post[units] + s_j * (n_j * x_a**2 + 2.0 * x_a * bx + bx2)
    return own + quad - in_m, own


def ar1_correlation(resid0: np.ndarray, u0: np.ndarray, time0: np.ndarray) -> float:
    """Pooled lag-1 autocorrelation of the errors, from first differences of the stage-1 residuals.

    Differencing removes the unit effect (and the bias that estimating it puts into the residuals'
    own autocorrelation); for a stationary AR(1) with coefficient ``rho``,
    ``corr(D e_t, D e_{t-1}) = -(1 - rho) / 2``, so ``rho = 1 + 2 corr``. Pairs need three
    consecutive untreated periods of one unit. The products are pooled unweighted: scaling each
    unit by its own estimated variance, which comes from the same residuals, biases the ratio
    towards 0 (0.54 instead of 0.63 on a panel with rho = 0.7 where the unweighted ratio is 0.63).
    Clipped to ``[-0.95, 0.95]``; 0 when there are no such triples.
    """
    order = np.lexsort((time0, u0))
    u, t = u0[order], time0[order]
    e = resid0[order]
    d = np.diff(e)
    ok = (np.diff(u) == 0) & (np.diff(t) == 1)  # d[k] = e[k+1] - e[k] within a unit, one period apart
    both = ok[1:] & ok[:-1]
    if not both.any():
        return 0.0
    num = float(np.sum(d[1:][both] * d[:-1][both]))
    den = 0.5 * float(np.sum(d[1:][both] ** 2) + np.sum(d[:-1][both] ** 2))
    return float(np.clip(1.0 + 2.0 * num / den, -0.95, 0.95)) if den > 0 else 0.0


def unit_variances_ar1(
    fe: TwoWayFE,
    sigma2: np.ndarray,
    rho: float,
    resid0: np.ndarray,
    u0: np.ndarray,
    t0: np.ndarray,
    u1: np.ndarray,
    t1: np.ndarray,
    units: np.ndarray,
    n_post: np.ndarray,
    periods: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Variance of each treated unit's mean effect allowing serially correlated errors, and its own part.

    Own part: unit ``j``'s full weight vector ``u_j`` over its periods (``1/n_post`` on its
    treated ones, ``-(x_a_j + x_l_t)`` on its untreated ones) against the AR(1) covariance
    ``sigma_j^2 rho^|t - s|``. Other units: clustered by unit, ``sum_{i != j} (sum_t v_it
    e_it)^2 = x_l' (R'R) x_l - (R x_l)_j^2`` with ``R`` the units-by-periods matrix of residuals.
    Returns ``(variance, own part)``.
    """
    x_l, x_a, b_j, g_l = _unit_solutions(fe, u1, t1, units, n_post)
    residuals = sparse.csr_matrix((resid0, (u0, t0)), shape=(fe.N, fe.T))
    rtr = (residuals.T @ residuals).toarray()
    own_cluster = np.asarray(residuals[units].multiply(x_l.T).sum(axis=1)).ravel()  # (R x_l^(j))_j
    others = np.sum(x_l * (rtr @ x_l), axis=0) - own_cluster**2
    weights = g_l.T - b_j.T.multiply(x_a[:, None] + x_l.T).toarray()  # (J, T): own-unit weights
    lags = np.abs(periods[:, None] - periods[None, :])
    gamma = rho ** lags.astype(float)
    own = sigma2[units] * np.sum((weights @ gamma) * weights, axis=1)
    return own + others, own

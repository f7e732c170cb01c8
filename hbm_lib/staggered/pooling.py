"""Stage 2: pool stage-1 unit effects with the hierarchical normal model, allowing correlated errors.

The model is the book's hierarchical normal model (:func:`hbm_lib.hierarchical_normal`) with one
change: the stage-1 errors may be correlated,

``y ~ N(theta, Sigma)``, ``theta_i ~ N(mu_group[g_i], sigma_unit)``, ``mu_group ~ N(mu, sigma_group)``,
``mu ~ N(mu_prior_mean, mu_prior_sd)``,

with ``Sigma`` the (known) covariance of the stage-1 estimates. The imputation estimator's unit
effects share the fitted period effects, so their errors are correlated (``Sigma`` from
:func:`hbm_lib.staggered.unit_covariance`); with ``Sigma`` diagonal the model is exactly
``hierarchical_normal(y, se, groups=...)``.

The posterior is computed exactly, without MCMC, as in ``hbm_lib.fit(model, method="grid")``:
with ``theta``, the group means and ``mu`` integrated out, only ``(log sigma_unit, log
sigma_group)`` is left, and it is integrated on a grid. With ``Sigma = Q diag(lam) Q'`` computed
once, the marginal covariance ``Sigma + sigma_unit^2 I + L L'`` (``L``: the group and ``mu``
columns, rank ``G + 1``) is inverted by the Woodbury identity in ``O(n G^2)`` per node, and the
posterior mean and variance of any linear function of ``theta`` (a unit, a group's mean) in
``O(n G)`` per node. Intervals are quantiles of the exact normal mixture over the nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from hbm_lib._validation import as_finite_1d, as_labels, as_positive_1d, check_level, check_positive, unit_labels

SdPrior = tuple[str, float]  # as in hbm_lib.models: ("half_normal" | "half_cauchy" | "uniform", scale)

__all__ = ["PooledEffects", "pool_unit_effects"]

_LOG_2PI = math.log(2.0 * math.pi)
DROP = 18.0  # log posterior below the maximum treated as negligible (exp(-18) ~ 1.5e-8)
K_SEARCH, K_FINAL = 24, 48  # grid points per axis while finding the box, and in the final grid


@dataclass(frozen=True)
class PooledEffects:
    """What :func:`pool_unit_effects` returns.

    Attributes
    ----------
    units : pandas.DataFrame
        Posterior of each unit's effect ``theta_i``: ``estimate`` (mean), ``sd``, ``lower`` and
        ``upper`` (equal-tailed interval), indexed by unit label.
    groups : pandas.DataFrame
        Posterior of each group's mean effect, the unweighted mean of ``theta`` over the group's
        units (the group's own units, not a new one): ``n_units``, ``estimate``, ``sd``,
        ``lower``, ``upper``, indexed by group label. Empty without ``groups``.
    averages : pandas.DataFrame
        Posterior of each weighted mean of ``theta`` asked for in ``averages``, same columns.
    sigma : pandas.DataFrame
        Posterior mean, sd and interval of ``sigma_unit`` (and ``sigma_group``).
    level : float
        Probability of the intervals.
    """

    units: pd.DataFrame
    groups: pd.DataFrame
    averages: pd.DataFrame
    sigma: pd.DataFrame
    level: float


def pool_unit_effects(
    estimates,
    *,
    se=None,
    cov=None,
    groups=None,
    averages: Mapping[str, object] | None = None,
    mu_prior_mean: float = 0.0,
    mu_prior_sd: float = 10.0,
    sigma_unit_prior: SdPrior = ("half_normal", 5.0),
    sigma_group_prior: SdPrior = ("half_normal", 5.0),
    level: float = 0.95,
) -> PooledEffects:
    """Exact posterior of the hierarchical normal model of unit estimates with correlated errors.

    Stage 2 of the book's staggered-adoption analysis (module docstring for the model and the
    computation). Give the stage-1 errors either as standard errors ``se`` (independent errors:
    the model of :func:`hbm_lib.hierarchical_normal`, and the same posterior as
    ``fit(model, method="grid")``) or as their full covariance ``cov``.

    Parameters
    ----------
    estimates : array-like
        Stage-1 unit estimates; a pandas Series lends its index as unit labels.
    se : array-like, optional
        Their standard errors (positive), errors independent.
    cov : array-like or pandas.DataFrame, optional
        Their covariance matrix (symmetric, positive semi-definite, positive diagonal). A
        DataFrame is aligned to ``estimates`` by its index and columns.
    groups : array-like, optional
        Group label of each unit (at least two groups): the three-level model. Without it, two
        levels (every unit around ``mu``).
    averages : mapping of str to array-like, optional
        Named weights (one non-negative value per unit, not all zero), each giving the posterior
        of the weighted mean of ``theta`` with these weights (normalised to sum to 1).
    mu_prior_mean, mu_prior_sd : float
        Normal prior of ``mu``.
    sigma_unit_prior, sigma_group_prior : tuple of (str, float)
        Priors of the standard deviations, as in :func:`hbm_lib.hierarchical_normal`.
    level : float, default 0.95
        Probability of the equal-tailed intervals.

    Returns
    -------
    PooledEffects

    Raises
    ------
    ValueError
        If neither or both of ``se`` and ``cov`` are given, an input has the wrong length or
        labels, ``cov`` is not symmetric positive semi-definite, or a prior or weight is invalid.

    Examples
    --------
    Three units with independent errors, two levels:

    >>> import numpy as np
    >>> pooled = pool_unit_effects([1.0, 2.0, 4.0], se=[1.0, 1.0, 1.0], mu_prior_sd=5.0,
    ...                            sigma_unit_prior=("half_normal", 2.0))
    >>> pooled.units.round(1)["estimate"].tolist()
    [1.6, 2.1, 3.2]

    The same estimates with strongly correlated errors are shrunk less towards each other, since
    part of what they share is noise:

    >>> cov = 0.2 * np.eye(3) + 0.8
    >>> correlated = pool_unit_effects([1.0, 2.0, 4.0], cov=cov, mu_prior_sd=5.0,
    ...                                sigma_unit_prior=("half_normal", 2.0))
    >>> bool(np.ptp(correlated.units["estimate"]) > np.ptp(pooled.units["estimate"]))
    True
    """
    level = check_level(level)
    problem = _Problem.build(estimates, se, cov, groups, averages, mu_prior_mean, mu_prior_sd,
                             sigma_unit_prior, sigma_group_prior)
    s_u, s_g = _box(problem)
    logp = problem.log_posterior(s_u, s_g)
    mass = np.exp(logp - logp.max())
    mass /= mass.sum()
    means, variances, weights = problem.moments(s_u, s_g, mass, _heaviest(mass))
    q = (1.0 - level) / 2.0
    lower, upper = (_mixture_quantile(weights, means, variances, p) for p in (q, 1.0 - q))
    mean = weights @ means
    sd = np.sqrt(np.clip(weights @ (variances + means**2) - mean**2, 0.0, None))
    table = pd.DataFrame({"estimate": mean, "sd": sd, "lower": lower, "upper": upper})
    n, n_groups = len(problem.y), len(problem.group_labels)
    units = table.iloc[:n].set_axis(problem.labels)
    group_table = table.iloc[n:n + n_groups].set_axis(problem.group_labels)
    group_table.insert(0, "n_units", np.bincount(problem.codes, minlength=n_groups) if n_groups else [])
    average_table = table.iloc[n + n_groups:].set_axis(pd.Index(problem.average_names, name="average"))
    return PooledEffects(units=units, groups=group_table, averages=average_table,
                         sigma=_sigma_table(s_u, s_g, mass, level, problem.three_level), level=level)


@dataclass
class _Problem:
    """The data in eigen-coordinates of ``Sigma``, and the rows ``F`` of the linear functions wanted."""

    y: np.ndarray
    labels: pd.Index
    codes: np.ndarray
    group_labels: pd.Index
    average_names: list
    lam: np.ndarray  # eigenvalues of Sigma
    y_t: np.ndarray  # Q'(y - m0)
    c_t: np.ndarray  # Q'[Z, 1]: (n, G + 1), the last column for mu
    psi: np.ndarray  # F Q diag(lam): (k, n)
    f_y: np.ndarray  # F y
    f_sigma_f: np.ndarray  # diag(F Sigma F')
    mu_prior_sd: float
    priors: tuple

    @property
    def three_level(self) -> bool:
        return len(self.group_labels) > 0

    @classmethod
    def build(cls, estimates, se, cov, groups, averages, mu_prior_mean, mu_prior_sd, sigma_unit_prior, sigma_group_prior):
        # the priors are the models' (imported here: hbm_lib.models imports PyMC, which this module does not need)
        from hbm_lib.models._priors import check_sd_prior

        y = as_finite_1d(estimates, "estimates")
        labels = unit_labels(None, estimates, len(y))
        sigma = _covariance(se, cov, estimates, len(y))
        mu_prior_mean = float(as_finite_1d(mu_prior_mean, "mu_prior_mean")[0])
        priors = (check_sd_prior(sigma_unit_prior, "sigma_unit_prior"), check_sd_prior(sigma_group_prior, "sigma_group_prior"))
        codes, group_labels = _groups(groups, estimates, len(y))
        names, weights = _averages(averages, estimates, len(y))
        f = np.vstack([np.eye(len(y)), _group_rows(codes, len(group_labels)), weights])
        lam, q = np.linalg.eigh(sigma)
        lam = np.clip(lam, 0.0, None)
        z = np.zeros((len(y), len(group_labels) + 1))
        if len(group_labels):
            z[np.arange(len(y)), codes] = 1.0
        z[:, -1] = 1.0
        f_q = f @ q
        return cls(y, labels, codes, group_labels, names, lam, q.T @ (y - mu_prior_mean), q.T @ z, f_q * lam,
                   f @ y, (f_q**2) @ lam, check_positive(mu_prior_sd, "mu_prior_sd"), priors)

    def _unit_node(self, s: float) -> dict:
        """What does not depend on ``sigma_group`` at ``log sigma_unit = s``, in the eigenbasis ``U``
        of the group block ``Z'(Sigma + sigma_unit^2 I)^-1 Z`` (diagonal there, ``gamma``)."""
        d = 1.0 / (self.lam + math.exp(2.0 * s))
        dc = self.c_t * d[:, None]
        h, b0 = self.c_t.T @ dc, dc.T @ self.y_t
        gamma, u = np.linalg.eigh(h[:-1, :-1])
        return {"d": d, "u": u, "gamma": np.clip(gamma, 0.0, None), "h_t": u.T @ h[:-1, -1], "h_mm": h[-1, -1],
                "b_g": u.T @ b0[:-1], "b_m": b0[-1], "c": float(self.y_t @ (d * self.y_t)), "logdet_a": -float(np.sum(np.log(d)))}

    def _group_nodes(self, node: dict, s_g: np.ndarray) -> dict:
        """Woodbury pieces at every ``log sigma_group`` in ``s_g`` (arrays over those nodes): with
        ``P = 1 + sigma_g^2 gamma`` and the Schur complement ``schur`` of the ``mu`` column,
        ``log det``, the quadratic form, and ``e`` (see :meth:`moments`)."""
        sg = np.exp(s_g)[:, None]  # (K_g, 1)
        tau = self.mu_prior_sd
        p = 1.0 + sg**2 * node["gamma"][None, :]  # (K_g, G)
        ph = node["h_t"][None, :] / p
        schur = 1.0 + tau**2 * (node["h_mm"] - sg[:, 0] ** 2 * np.sum(node["h_t"][None, :] * ph, axis=1))
        b_g = sg * node["b_g"][None, :]
        e = sg[:, 0] * tau * np.sum(ph * b_g, axis=1) - tau * node["b_m"]
        quad = node["c"] - (np.sum(b_g**2 / p, axis=1) + e**2 / schur)
        logdet = node["logdet_a"] + np.sum(np.log(p), axis=1) + np.log(schur)
        return {"sg": sg[:, 0], "p": p, "ph": ph, "schur": schur, "b_g": b_g, "e": e, "quad": quad, "logdet": logdet}

    def log_posterior(self, s_u: np.ndarray, s_g: np.ndarray):
        """``log p(s_u, s_g | y)`` up to a constant on the grid (rows ``s_u``)."""
        from hbm_lib.models._normal_grid import log_sd_prior

        n = len(self.y)
        prior_u = log_sd_prior(np.exp(s_u), self.priors[0]) + s_u
        prior_g = log_sd_prior(np.exp(s_g), self.priors[1]) + s_g if self.three_level else np.zeros(len(s_g))
        logp = np.empty((len(s_u), len(s_g)))
        for a, s in enumerate(s_u):
            g = self._group_nodes(self._unit_node(s), s_g)
            logp[a] = -0.5 * (n * _LOG_2PI + g["logdet"] + g["quad"]) + prior_u[a] + prior_g
        return logp

    def moments(self, s_u: np.ndarray, s_g: np.ndarray, mass: np.ndarray, nodes: np.ndarray):
        """Posterior means and variances of ``F theta`` at the grid ``nodes`` (a boolean mask), and
        their masses (renormalised): arrays (nodes, k), (nodes, k), (nodes,).

        At a node, ``F theta | y`` is normal with mean ``F y - Psi r`` and variance ``diag(F Sigma
        F') - diag(Psi (Q' (K + Sigma)^-1 Q) Psi')`` (``Psi = F Q diag(lam)``); with ``x = Psi D C``
        rotated by ``U`` and scaled, both reduce to sums over the ``G + 1`` columns."""
        means, variances, weights = [], [], []
        tau = self.mu_prior_sd
        for a, s in enumerate(s_u):
            keep = nodes[a]
            if not keep.any():
                continue
            node = self._unit_node(s)
            g = self._group_nodes(node, s_g[keep])
            psi_d = self.psi * node["d"][None, :]
            x = psi_d @ self.c_t
            x_g, x_m = x[:, :-1] @ node["u"], tau * x[:, -1]  # (k, G), (k,)
            base_mean = self.f_y - psi_d @ self.y_t
            base_var = self.f_sigma_f - (self.psi * psi_d).sum(axis=1)
            xs_g = g["sg"][:, None, None] * x_g[None]  # (nodes, k, G)
            row = g["sg"][:, None] * tau * np.einsum("nkg,ng->nk", xs_g, g["ph"]) - x_m[None, :]
            pb = g["b_g"] / g["p"]
            shift = np.einsum("nkg,ng->nk", xs_g, pb) + (g["e"] / g["schur"])[:, None] * row
            spread = np.einsum("nkg,ng->nk", xs_g**2, 1.0 / g["p"]) + row**2 / g["schur"][:, None]
            means.append(base_mean[None, :] + shift)
            variances.append(base_var[None, :] + spread)
            weights.append(mass[a][keep])
        weights = np.concatenate(weights)
        return np.vstack(means), np.clip(np.vstack(variances), 1e-300, None), weights / weights.sum()


def _covariance(se, cov, estimates, n: int) -> np.ndarray:
    if (se is None) == (cov is None):
        raise ValueError("give the stage-1 errors as exactly one of se (independent errors) or cov (their covariance)")
    if se is not None:
        if isinstance(se, pd.Series) and isinstance(estimates, pd.Series) and not se.index.equals(estimates.index):
            se = _reindexed(se, estimates.index, "se")
        values = as_positive_1d(se, "se")
        if len(values) != n:
            raise ValueError(f"se must have one value per unit: expected {n}, got {len(values)}")
        return np.diag(values**2)
    if isinstance(cov, pd.DataFrame):
        if not cov.index.equals(cov.columns):
            raise ValueError("cov must have the same labels, in the same order, as index and columns")
        if isinstance(estimates, pd.Series) and not cov.index.equals(estimates.index):
            cov = _reindexed(cov, estimates.index, "cov").loc[:, estimates.index]
    try:
        matrix = np.asarray(cov, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cov must be a numeric matrix ({err})") from None
    if matrix.shape != (n, n):
        raise ValueError(f"cov must be {n} x {n} (one row and column per unit); got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("cov must be finite")
    if not np.allclose(matrix, matrix.T, rtol=1e-8, atol=1e-12 * np.abs(matrix).max()):
        raise ValueError("cov must be symmetric")
    if (np.diag(matrix) <= 0).any():
        i = int(np.flatnonzero(np.diag(matrix) <= 0)[0])
        raise ValueError(f"cov must have a positive diagonal (variances); got {matrix[i, i]:g} at position {i}")
    matrix = (matrix + matrix.T) / 2.0
    if np.linalg.eigvalsh(matrix)[0] < -1e-8 * np.diag(matrix).max():
        raise ValueError("cov must be positive semi-definite; it has a negative eigenvalue")
    return matrix


def _reindexed(x, index: pd.Index, name: str):
    if not (x.index.isin(index).all() and index.isin(x.index).all() and len(x.index) == len(index)):
        raise ValueError(f"{name} and estimates are labelled by different units; align them, or pass plain arrays")
    return x.reindex(index)


def _groups(groups, estimates, n: int) -> tuple[np.ndarray, pd.Index]:
    if groups is None:
        return np.zeros(n, dtype=np.int64), pd.Index([], name="group")
    if isinstance(groups, pd.Series) and isinstance(estimates, pd.Series) and not groups.index.equals(estimates.index):
        groups = _reindexed(groups, estimates.index, "groups")
    codes, labels = as_labels(groups, n, "groups")
    if len(labels) < 2:
        raise ValueError("groups must have at least two distinct labels; without groups, leave it out (two levels)")
    name = groups.name if isinstance(groups, pd.Series) and groups.name is not None else "group"
    return codes, labels.rename(name)


def _group_rows(codes: np.ndarray, n_groups: int) -> np.ndarray:
    rows = np.zeros((n_groups, len(codes)))
    if n_groups:
        rows[codes, np.arange(len(codes))] = 1.0
        rows /= rows.sum(axis=1, keepdims=True)
    return rows


def _averages(averages, estimates, n: int) -> tuple[list, np.ndarray]:
    if averages is None:
        return [], np.zeros((0, n))
    if not isinstance(averages, Mapping):
        raise ValueError(f"averages must be a mapping of names to weights; got {type(averages).__name__}")
    names, rows = [], []
    for name, weights in averages.items():
        if isinstance(weights, pd.Series) and isinstance(estimates, pd.Series) and not weights.index.equals(estimates.index):
            weights = _reindexed(weights, estimates.index, f"averages[{name!r}]")
        w = as_finite_1d(weights, f"averages[{name!r}]")
        if len(w) != n or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"averages[{name!r}] must hold {n} non-negative weights, not all zero")
        names.append(name)
        rows.append(w / w.sum())
    return names, np.vstack(rows)


def _box(problem: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """Grid nodes in ``(log sigma_unit, log sigma_group)`` covering the posterior mass: start from a
    wide box, widen an edge whose cell is within ``DROP`` of the maximum, else trim the box to the
    cells within ``DROP`` with one cell to spare; then lay the final grid over it."""
    n = len(problem.y)
    centre = math.log(float(np.std(problem.y)) + math.sqrt(float(np.median(problem.f_sigma_f[:n]))))
    axes = ["u", "g"] if problem.three_level else ["u"]
    ranges = {a: [centre - 10.0, centre + 3.0] for a in axes}
    caps = {a: (math.log(prior[1]) if prior[0] == "uniform" else centre + 40.0) for a, prior in zip("ug", problem.priors, strict=True)}
    for a in axes:
        ranges[a][1] = min(ranges[a][1], caps[a])
    for _ in range(30):
        nodes = {a: _midpoints(*ranges[a], K_SEARCH) for a in axes}
        logp = problem.log_posterior(nodes["u"], nodes.get("g", np.array([0.0])))
        inside = logp > logp.max() - DROP
        widened = False
        for a, axis_inside in zip(axes, (inside.any(axis=1), inside.any(axis=0)), strict=False):
            lo, hi = ranges[a]
            step = (hi - lo) / K_SEARCH
            first, last = int(np.argmax(axis_inside)), int(K_SEARCH - 1 - np.argmax(axis_inside[::-1]))
            if first == 0 and lo > centre - 40.0:
                new_lo, widened = lo - (hi - lo), True
            else:
                new_lo = lo + max(first - 1, 0) * step
            if last == K_SEARCH - 1 and hi < caps[a]:
                new_hi, widened = min(hi + (hi - lo), caps[a]), True
            else:
                new_hi = lo + min(last + 2, K_SEARCH) * step
            ranges[a] = [new_lo, new_hi]
        if not widened:
            break
    return _midpoints(*ranges["u"], K_FINAL), (_midpoints(*ranges["g"], K_FINAL) if problem.three_level else np.array([0.0]))


def _midpoints(lo: float, hi: float, k: int) -> np.ndarray:
    return lo + (np.arange(k) + 0.5) * (hi - lo) / k


def _heaviest(mass: np.ndarray, tail: float = 1e-6) -> np.ndarray:
    """Mask of the grid's heaviest nodes holding all but ``tail`` of the mass: leaving the rest out
    moves a probability computed from the mixture by less than ``tail``."""
    flat = mass.ravel()
    order = np.argsort(flat)[::-1]
    n_keep = int(np.searchsorted(np.cumsum(flat[order]), 1.0 - tail)) + 1
    keep = np.zeros(flat.size, dtype=bool)
    keep[order[:n_keep]] = True
    return keep.reshape(mass.shape)


def _mixture_quantile(weights: np.ndarray, means: np.ndarray, variances: np.ndarray, p: float) -> np.ndarray:
    """The ``p`` quantile of each column's normal mixture (weights over rows), by safeguarded Newton."""
    sds = np.sqrt(variances)
    lo, hi = (means - 12.0 * sds).min(axis=0), (means + 12.0 * sds).max(axis=0)
    mean = weights @ means
    sd = np.sqrt(np.clip(weights @ (variances + means**2) - mean**2, 1e-300, None))
    x = mean + special.ndtri(p) * sd
    for _ in range(60):
        z = (x[None, :] - means) / sds
        cdf = weights @ special.ndtr(z)
        pdf = weights @ (np.exp(-0.5 * z**2) / (sds * math.sqrt(2.0 * math.pi)))
        lo, hi = np.where(cdf < p, x, lo), np.where(cdf >= p, x, hi)
        step = np.where(pdf > 0, (cdf - p) / np.where(pdf > 0, pdf, 1.0), np.inf)
        new = x - step
        new = np.where((new < lo) | (new > hi) | ~np.isfinite(new), (lo + hi) / 2.0, new)
        if np.max(np.abs(new - x) / sd) < 1e-7:
            return new
        x = new
    return x


def _sigma_table(s_u, s_g, mass, level, three_level) -> pd.DataFrame:
    rows = {"sigma_unit": (s_u, mass.sum(axis=1))}
    if three_level:
        rows["sigma_group"] = (s_g, mass.sum(axis=0))
    out = {}
    q = (1.0 - level) / 2.0
    for name, (s, m) in rows.items():
        sigma = np.exp(s)
        mean = float(m @ sigma)
        cdf = np.cumsum(m)
        out[name] = {"estimate": mean, "sd": math.sqrt(max(float(m @ sigma**2) - mean**2, 0.0)),
                     "lower": float(np.exp(np.interp(q, cdf, s))), "upper": float(np.exp(np.interp(1.0 - q, cdf, s)))}
    return pd.DataFrame(out).T

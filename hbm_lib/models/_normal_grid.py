"""The exact posterior of the hierarchical normal model by deterministic quadrature, without MCMC.

With ``theta``, the group means and ``mu`` integrated out, the posterior of the hierarchical normal
model has only its standard deviations left: ``(sigma_unit, sigma_group)`` with three levels,
``sigma_unit`` with two. Their joint posterior density is known up to a constant in closed form
(the marginal likelihood of ``hbm_lib.models.normal`` times the priors), so it can be
integrated on a grid to any accuracy, and everything else follows from normal conditionals.

The algorithm (:func:`fit_grid`), in the coordinates ``s = log sigma`` (where the posterior is
smooth and its tails at most exponential):

1. **Box.** Start from a wide box around the scale of the data, evaluate the log posterior on a
   coarse grid of cell midpoints, and move each edge until the density within ``DROP = 16`` of the
   maximum (a factor of 1e-7) lies inside with a cell to spare, widening where the edge cells are
   above that level and trimming past cells more than ``DROP + SLACK = 18`` below it (the gap keeps
   the search from going back and forth; at most to the prior's support and
   ``|s - log(scale of the data)| <= 40``). So the mass left outside is below about 1e-6.
2. **Resolution.** Evaluate on ``K`` midpoints per axis, ``K = 32, 64, ...``, until the posterior
   mean and sd of each ``log sigma`` and the posterior mean of ``mu`` change by less than
   ``tol = 1e-4`` of their posterior sd when ``K`` doubles (at most ``K = 512``). With equal cells
   in ``s`` the integral is the midpoint rule, whose error falls like ``1/K^2``.
3. **Cost.** The units enter only through ``sigma_unit``: for each of its ``K`` nodes one pass over
   the ``n`` units gives each group's precision ``P_g`` and precision-weighted mean ``ybar_g`` and
   the within-group term, in ``O(n)``. The ``K`` nodes of ``sigma_group`` then cost ``O(G)`` each,
   so a grid costs ``O(K n + K^2 G)``.
4. **Exact moments.** At every node, ``mu``, ``mu_group`` and ``theta`` are normal given the
   standard deviations (the conditionals of :func:`hbm_lib.models.normal.draw_conditionals`); their
   posterior means and standard deviations are mixtures over the nodes, accumulated per
   ``sigma_unit`` node in ``O(n)``, so without Monte Carlo error.
5. **Draws.** Cells are drawn with probability equal to their mass and a point uniformly within
   each (in ``s``), then ``mu``, ``mu_group`` and ``theta`` exactly from their conditionals: independent
   draws from the posterior, in the layout of a NUTS fit.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from hbm_lib.models._priors import SdPrior

DROP = 16.0  # log density below the maximum treated as negligible (exp(-16) ~ 1.1e-7)
# the box is widened where a cell within DROP of the maximum touches an edge, but trimmed only past
# cells below DROP + SLACK: without the gap, a cell near the threshold can be trimmed at one
# resolution and call for widening at the next, and the search goes back and forth
SLACK = 2.0
START_K, MAX_K = 32, 512
TOL = 1e-4
_LOG_2PI = math.log(2.0 * math.pi)


def log_sd_prior(sigma: np.ndarray, prior: SdPrior) -> np.ndarray:
    """Log density of each value of ``sigma`` under ``prior`` (``-inf`` outside its support)."""
    family, scale = prior
    if family == "half_normal":
        return stats.halfnorm.logpdf(sigma, scale=scale)
    if family == "half_cauchy":
        return stats.halfcauchy.logpdf(sigma, scale=scale)
    with np.errstate(divide="ignore"):
        return np.where(sigma < scale, -math.log(scale), -np.inf)


@dataclass
class _UnitPass:
    """What the units contribute at one value of ``sigma_unit``."""

    within: float  # sum_i log N(y_i | ybar_g, v_i) + sum_g log(2 pi / P_g) / 2
    p_g: np.ndarray  # group precisions
    ybar_g: np.ndarray  # precision-weighted group means


class NormalPosterior:
    """The log posterior of ``log sigma_unit`` (and ``log sigma_group``) of one :class:`NormalSpec`."""

    def __init__(self, spec) -> None:
        self.spec = spec
        self.codes = spec.codes if spec.three_level else np.zeros(len(spec.y), dtype=np.int64)
        self.n_groups = int(self.codes.max()) + 1
        self.se_sq = spec.se**2
        self.scale = float(np.std(spec.y) + np.median(spec.se))  # where the box starts
        self._cache: dict[float, _UnitPass] = {}
        # the units sorted by group, and where each group starts: group sums by np.add.reduceat
        self._order = np.argsort(self.codes, kind="stable")
        self._starts = np.flatnonzero(np.r_[True, np.diff(self.codes[self._order]) != 0])

    def unit_pass(self, s_u: float) -> _UnitPass:
        if s_u not in self._cache:
            self.unit_passes(np.array([s_u]))
        return self._cache[s_u]

    def unit_passes(self, s_u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`unit_pass` at every value of ``s_u`` at once: ``within`` (K,), ``p_g`` and
        ``ybar_g`` (K, G), in blocks of nodes so that the (nodes x units) arrays stay small."""
        missing = [float(x) for x in s_u if float(x) not in self._cache]
        y, codes, n = self.spec.y, self.codes, len(self.spec.y)
        block = max(1, UNIT_BLOCK // n)
        for first in range(0, len(missing), block):
            nodes = np.array(missing[first:first + block])
            v = self.se_sq[None, :] + np.exp(2.0 * nodes)[:, None]
            precision = 1.0 / v
            p_g = self._group_sums(precision)
            ybar_g = self._group_sums(precision * y) / p_g
            resid = y[None, :] - ybar_g[:, codes]
            within = -0.5 * (np.sum(np.log(v) + resid**2 * precision, axis=1) + n * _LOG_2PI)
            within += 0.5 * np.sum(_LOG_2PI - np.log(p_g), axis=1)
            for k, node in enumerate(nodes):
                self._cache[float(node)] = _UnitPass(float(within[k]), p_g[k], ybar_g[k])
        passes = [self._cache[float(x)] for x in s_u]
        return (np.array([u.within for u in passes]), np.array([u.p_g for u in passes]),
                np.array([u.ybar_g for u in passes]))

    def _group_sums(self, values: np.ndarray) -> np.ndarray:
        """Sums over the units of each group, for every row of ``values`` (nodes x units)."""
        if self.n_groups == 1:
            return values.sum(axis=1, keepdims=True)
        return np.add.reduceat(values[:, self._order], self._starts, axis=1)

    def group_passes(self, within, p_g, ybar_g, s_g: np.ndarray) -> dict[str, np.ndarray]:
        """Between-group and top-level terms on the grid (K_u nodes of ``log sigma_unit`` from
        :meth:`unit_passes`, times ``s_g``; two levels: ``s_g = [-inf]``, one group with
        ``sigma_group = 0``). Arrays of shape (K_u, K_g), and (K_u, K_g, G) for ``var_g``."""
        m0, s0_sq = self.spec.mu_prior_mean, self.spec.mu_prior_sd**2
        sg_sq = np.exp(2.0 * s_g)[None, :, None]
        var_g = 1.0 / p_g[:, None, :] + sg_sq
        w_g = 1.0 / var_g
        w = w_g.sum(axis=2)
        ybar = (w_g * ybar_g[:, None, :]).sum(axis=2) / w
        between = -0.5 * (self.n_groups * _LOG_2PI + np.log(var_g).sum(axis=2)
                          + (w_g * (ybar_g[:, None, :] - ybar[:, :, None]) ** 2).sum(axis=2))
        top = -0.5 * (np.log1p(s0_sq * w) + (ybar - m0) ** 2 / (1.0 / w + s0_sq))
        return {"loglik": within[:, None] + between + top, "w": w, "ybar": ybar, "var_g": var_g,
                "sg_sq": np.broadcast_to(sg_sq[0, :, 0], w.shape)}

    def group_pass(self, unit: _UnitPass, s_g: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`group_passes` at one node of ``log sigma_unit`` (arrays over ``s_g``)."""
        g = self.group_passes(np.array([unit.within]), unit.p_g[None, :], unit.ybar_g[None, :], s_g)
        return {name: values[0] for name, values in g.items()}

    def log_density(self, s_u: np.ndarray, s_g: np.ndarray) -> np.ndarray:
        """``log p(s_u, s_g | y)`` up to a constant on the grid ``s_u x s_g`` (rows: ``s_u``)."""
        spec = self.spec
        prior_g = log_sd_prior(np.exp(s_g), spec.sigma_group_prior) + s_g if spec.three_level else np.zeros(len(s_g))
        prior_u = log_sd_prior(np.exp(s_u), spec.sigma_unit_prior) + s_u  # + s: the Jacobian of log
        return self.group_passes(*self.unit_passes(s_u), s_g)["loglik"] + prior_g[None, :] + prior_u[:, None]


#: Elements of the (nodes x units) arrays of :meth:`NormalPosterior.unit_passes`, per block.
UNIT_BLOCK = 1 << 22


def _midpoints(lo: float, hi: float, k: int) -> np.ndarray:
    return lo + (np.arange(k) + 0.5) * (hi - lo) / k


class _Box:
    """The integration box in ``(log sigma_unit, log sigma_group)`` and its search."""

    def __init__(self, post: NormalPosterior) -> None:
        self.post = post
        spec = post.spec
        centre = math.log(post.scale)
        self.limits = {"u": self._limits(centre, spec.sigma_unit_prior)}
        self.range = {"u": [centre - 8.0, centre + 3.0]}
        if spec.three_level:
            self.limits["g"] = self._limits(centre, spec.sigma_group_prior)
            self.range["g"] = [centre - 8.0, centre + 3.0]
        for axis in self.range:
            lo, hi = self.limits[axis]
            self.range[axis] = [max(self.range[axis][0], lo), min(self.range[axis][1], hi)]

    @staticmethod
    def _limits(centre: float, prior: SdPrior) -> tuple[float, float]:
        upper = centre + 40.0
        if prior[0] == "uniform":
            upper = min(upper, math.log(prior[1]))
        return centre - 40.0, upper

    def nodes(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        s_u = _midpoints(*self.range["u"], k)
        s_g = _midpoints(*self.range["g"], k) if "g" in self.range else np.array([-np.inf])
        return s_u, s_g

    def search(self, k: int = START_K, rounds: int = 30) -> None:
        """Move each edge until the cells within DROP of the maximum lie inside, one cell to spare."""
        for _ in range(rounds):
            s_u, s_g = self.nodes(k)
            logp = self.post.log_density(s_u, s_g)
            keep, near = logp > logp.max() - DROP, logp > logp.max() - DROP - SLACK
            changed = self._adjust("u", keep.any(axis=1), near.any(axis=1), k)
            if "g" in self.range:
                changed |= self._adjust("g", keep.any(axis=0), near.any(axis=0), k)
            if not changed:
                return
        warnings.warn("the grid box search did not settle; the quadrature may miss part of the posterior", stacklevel=4)

    def _adjust(self, axis: str, inside: np.ndarray, near: np.ndarray, k: int) -> bool:
        """Widen an edge that a cell of ``inside`` touches; trim past the cells of ``near``."""
        lo, hi = self.range[axis]
        step = (hi - lo) / k
        first, last = int(np.argmax(inside)), int(k - 1 - np.argmax(inside[::-1]))
        near_first, near_last = int(np.argmax(near)), int(k - 1 - np.argmax(near[::-1]))
        lim_lo, lim_hi = self.limits[axis]
        new_lo, new_hi = lo, hi
        if first == 0 and lo > lim_lo:
            new_lo = max(lo - (hi - lo), lim_lo)
        elif near_first > 2:
            new_lo = lo + (near_first - 1) * step
        if last == k - 1 and hi < lim_hi:
            new_hi = min(hi + (hi - lo), lim_hi)
        elif near_last < k - 3:
            new_hi = lo + (near_last + 2) * step
        self.range[axis] = [new_lo, new_hi]
        return (new_lo, new_hi) != (lo, hi)


@dataclass
class Quadrature:
    """The posterior on the final grid: nodes, cell masses and the box."""

    s_u: np.ndarray
    s_g: np.ndarray
    mass: np.ndarray  # (len(s_u), len(s_g)), sums to 1
    box: dict[str, list[float]]
    k: int
    edge_mass: float  # largest mass in a row or column on the edge of the box

    @property
    def three_level(self) -> bool:
        return np.isfinite(self.s_g).all()


def _summaries(post: NormalPosterior, s_u, s_g, mass) -> dict[str, tuple[float, float]]:
    """Posterior mean and sd of log sigma_unit, log sigma_group (three levels) and mu."""
    m0, s0_sq = post.spec.mu_prior_mean, post.spec.mu_prior_sd**2
    g = post.group_passes(*post.unit_passes(s_u), s_g)
    b = s0_sq / (s0_sq + 1.0 / g["w"])
    mean = m0 + b * (g["ybar"] - m0)
    m1 = float(np.sum(mass * mean))
    m2 = float(np.sum(mass * (mean**2 + b / g["w"])))
    out = {"mu": (m1, math.sqrt(max(m2 - m1**2, 0.0)))}
    for name, values, marginal in [("log_sigma_unit", s_u, mass.sum(axis=1)), ("log_sigma_group", s_g, mass.sum(axis=0))]:
        if np.isfinite(values).all():
            mean = float(marginal @ values)
            out[name] = (mean, math.sqrt(max(float(marginal @ (values - mean) ** 2), 0.0)))
    return out


def _change(current: dict, previous: dict) -> float:
    """Largest change of a mean, or of an sd of a log sigma, in units of that variable's sd."""
    worst = 0.0
    for name, (mean, sd) in current.items():
        old_mean, old_sd = previous[name]
        worst = max(worst, abs(mean - old_mean) / max(sd, 1e-300))
        if name != "mu":
            worst = max(worst, abs(sd - old_sd) / max(sd, 1e-300))
    return worst


def quadrature(post: NormalPosterior, tol: float = TOL) -> Quadrature:
    """Find the box, then double the resolution until the summaries settle (module docstring)."""
    box = _Box(post)
    box.search()
    previous, k = None, START_K
    while True:
        s_u, s_g = box.nodes(k)
        logp = post.log_density(s_u, s_g)
        mass = np.exp(logp - logp.max())
        mass /= mass.sum()
        current = _summaries(post, s_u, s_g, mass)
        if previous is not None and (_change(current, previous) < tol or k >= MAX_K):
            break
        previous, k = current, 2 * k
    edges = [mass[0].sum(), mass[-1].sum()]
    if mass.shape[1] > 1:
        edges += [mass[:, 0].sum(), mass[:, -1].sum()]
    return Quadrature(s_u, s_g, mass, {a: list(r) for a, r in box.range.items()}, k, float(max(edges)))


def exact_moments(post: NormalPosterior, q: Quadrature, keep_theta: bool) -> dict[str, np.ndarray]:
    """Posterior means and sds of ``mu``, ``mu_group`` and ``theta``: mixtures over the grid's nodes.

    At node ``(a, b)``, with ``b_mu = s0^2 / (s0^2 + 1/W)``: ``mu ~ N(m0 + b_mu (ybar - m0), b_mu / W)``;
    ``mu_group[g]`` has mean ``M_g = b_g ybar_g + (1 - b_g) E[mu]`` and variance
    ``(1 - b_g)^2 var(mu) + b_g / P_g`` with ``b_g = sigma_group^2 / V_g``; ``theta[i]`` has mean
    ``w_i y_i + (1 - w_i) M_g`` and second moment ``w_i se_i^2 + w_i^2 y_i^2 + 2 w_i (1 - w_i) y_i
    M_g + (1 - w_i)^2 (M_g^2 + var(mu_g))`` with ``w_i = sigma_unit^2 / (se_i^2 + sigma_unit^2)``. The
    sums over ``sigma_group`` nodes are taken per group first, so ``theta`` costs ``O(n)`` per
    ``sigma_unit`` node.
    """
    spec = post.spec
    m0, s0_sq = spec.mu_prior_mean, spec.mu_prior_sd**2
    n, G = len(spec.y), post.n_groups
    acc = {"mu": np.zeros(2), "mu_group": np.zeros((2, G)), "theta": np.zeros((2, n)) if keep_theta else None}
    for a, s in enumerate(q.s_u):
        p = q.mass[a]
        if p.sum() == 0.0:
            continue
        unit = post.unit_pass(float(s))
        g = post.group_pass(unit, q.s_g)
        b = s0_sq / (s0_sq + 1.0 / g["w"])
        m_mu, v_mu = m0 + b * (g["ybar"] - m0), b / g["w"]
        acc["mu"] += [p @ m_mu, p @ (m_mu**2 + v_mu)]
        b_g = g["sg_sq"][:, None] / g["var_g"]  # 0 with two levels
        m_g = b_g * unit.ybar_g + (1.0 - b_g) * m_mu[:, None]
        v_g = (1.0 - b_g) ** 2 * v_mu[:, None] + b_g / unit.p_g
        first, second = p @ m_g, p @ (m_g**2 + v_g)
        acc["mu_group"] += [first, second]
        if keep_theta:
            w = math.exp(2.0 * s) / (post.se_sq + math.exp(2.0 * s))
            y, c = spec.y, post.codes
            acc["theta"][0] += p.sum() * w * y + (1.0 - w) * first[c]
            acc["theta"][1] += p.sum() * (w * post.se_sq + w**2 * y**2) + 2.0 * w * (1.0 - w) * y * first[c] + (1.0 - w) ** 2 * second[c]
    out = {}
    names = ["mu", *(["mu_group"] if spec.three_level else []), *(["theta"] if keep_theta else [])]
    for name in names:
        m1, m2 = acc[name]
        out[f"{name}_mean"] = m1
        out[f"{name}_sd"] = np.sqrt(np.clip(m2 - m1**2, 0.0, None))
    return out


def exact_loo(post: NormalPosterior, q: Quadrature) -> dict[str, np.ndarray | float]:
    """Leave-one-out predictive densities of every unit's estimate, by quadrature, without refits.

    At each node ``(sigma_unit, sigma_group)`` the model is Gaussian, so the density of ``y[i]``
    given the other units, ``p(y_i | y_-i, sigma)``, is normal in closed form: leaving unit ``i``
    out changes only its group's precision ``P_g`` and precision-weighted sum, and through them the
    posterior of ``mu`` (an ``O(1)`` update of the sums over groups), then the posterior of its
    group's mean ``N(m', V')``; the density is ``N(y_i | m', se_i^2 + sigma_unit^2 + V')``. A unit
    alone in its group leaves a group with no data, whose mean is then predicted from ``mu``.
    Leaving the unit out also changes the posterior of the standard deviations; on the grid that is
    an exact reweighting of the node masses, ``p(sigma | y_-i) = p(sigma | y) / p(y_i | y_-i, sigma)``
    up to a constant, which gives ``p(y_i | y_-i) = 1 / sum_nodes mass / p(y_i | y_-i, sigma)``.
    The same pass gives the full-data predictive density ``lpd_i = log sum_nodes mass
    p(y_i | y, sigma)``, so ``p_loo = sum(lpd_i - elpd_i)``. Cost: ``O(K_u K_g n)``, so the nodes
    are those of a grid of at most ``LOO_K = 64`` cells per axis over the quadrature's box (against
    256 cells, the library's tests find the densities within 0.003 and their sum within 0.005 on
    the log scale).

    Returns ``elpd_i`` and ``lpd_i`` (arrays of length ``n``) and ``edge_mass``: the largest share
    of any unit's leave-one-out mass that falls in the outermost cells of the box (the box was
    chosen for the full-data posterior; a unit influential enough to move the posterior to the edge
    makes this large, and the result less exact).
    """
    n = len(post.spec.y)
    if q.k > LOO_K:
        q = coarse(post, q, LOO_K)
    with np.errstate(divide="ignore"):
        log_mass = np.log(q.mass)  # -inf for cells without mass, which the log-sums ignore
    rows = np.flatnonzero((q.mass > 0.0).any(axis=1))  # sigma_unit nodes with mass
    units_per_chunk = max(1, LOO_CHUNK // (q.mass.shape[1] * min(len(rows), LOO_NODE_BLOCK)))
    parts = [_exact_loo_units(post, q, log_mass, rows, np.arange(lo, min(lo + units_per_chunk, n)))
             for lo in range(0, n, units_per_chunk)]
    return {"elpd_i": np.concatenate([p[0] for p in parts]), "lpd_i": np.concatenate([p[1] for p in parts]),
            "edge_mass": float(max(p[2] for p in parts))}


#: Elements of the (sigma_unit nodes x sigma_group nodes x units) arrays of :func:`exact_loo`.
LOO_CHUNK = 1 << 21
#: sigma_unit nodes per block of :func:`exact_loo`.
LOO_NODE_BLOCK = 16
#: Cells per axis of the grid :func:`exact_loo` sums over.
LOO_K = 64


def coarse(post: NormalPosterior, q: Quadrature, k: int) -> Quadrature:
    """The posterior on ``k`` cells per axis over the box of ``q`` (the same box, fewer nodes)."""
    box = {axis: tuple(r) for axis, r in q.box.items()}
    s_u = _midpoints(*box["u"], k)
    s_g = _midpoints(*box["g"], k) if "g" in box else np.array([-np.inf])
    logp = post.log_density(s_u, s_g)
    mass = np.exp(logp - logp.max())
    return Quadrature(s_u, s_g, mass / mass.sum(), q.box, k, q.edge_mass)


def _exact_loo_units(post: NormalPosterior, q: Quadrature, log_mass: np.ndarray, rows: np.ndarray, idx: np.ndarray):
    """:func:`exact_loo` for the units ``idx``, over the sigma_unit nodes ``rows`` in blocks:
    their elpd_i, lpd_i and largest edge share. Arrays are (nodes, sigma_group nodes, units)."""
    y, c = post.spec.y[idx], post.codes[idx]
    edge_cells = np.zeros(q.mass.shape, dtype=bool)
    edge_cells[[0, -1], :] = True
    if q.three_level:
        edge_cells[:, [0, -1]] = True
    total, lpd, edge = (np.full(len(y), -np.inf) for _ in range(3))  # running log-sums over nodes
    for first in range(0, len(rows), LOO_NODE_BLOCK):
        block = rows[first:first + LOO_NODE_BLOCK]
        full, left = _loo_log_densities(post, q.s_u[block], q.s_g, y, c, post.se_sq[idx])
        weights = log_mass[block][:, :, None]
        lpd = np.logaddexp(lpd, _logsumexp_nodes(weights + full))
        term = weights - left
        total = np.logaddexp(total, _logsumexp_nodes(term))
        on_edge = np.where(edge_cells[block][:, :, None], term, -np.inf)
        edge = np.logaddexp(edge, _logsumexp_nodes(on_edge))
    return -total, lpd, float(np.max(np.exp(edge - total)))


def _loo_log_densities(post: NormalPosterior, s_u: np.ndarray, s_g: np.ndarray, y, c, se_sq):
    """``log p(y_i | y, sigma)`` and ``log p(y_i | y_-i, sigma)`` at every node (see :func:`exact_loo`)."""
    m0, s0_sq = post.spec.mu_prior_mean, post.spec.mu_prior_sd**2
    within, p_all, ybar_all = post.unit_passes(s_u)
    g = post.group_passes(within, p_all, ybar_all, s_g)
    sg_sq = g["sg_sq"][:, :, None]  # (U, K, 1); 0 with two levels
    v = se_sq[None, :] + np.exp(2.0 * s_u)[:, None]  # (U, n)
    p_g, ybar_g = p_all[:, c][:, None, :], ybar_all[:, c][:, None, :]  # each unit's own group, (U, 1, n)
    w, wy, var_g = g["w"][:, :, None], (g["w"] * g["ybar"])[:, :, None], g["var_g"][:, :, c]
    # all the data: mu ~ N(M, S), then the unit's group mean ~ N(m, V)
    prec_mu = 1.0 / s0_sq + w
    S, M = 1.0 / prec_mu, (m0 / s0_sq + wy) / prec_mu
    shrink = 1.0 + sg_sq * p_g
    full = _log_normal(y, (sg_sq * p_g * ybar_g + M) / shrink, v[:, None, :] + sg_sq / shrink + S / shrink**2)
    # unit i left out of its group: that group's precision and precision-weighted sum
    p_left = p_g - 1.0 / v[:, None, :]
    alone = p_left <= 1e-12 * p_g  # the only unit of its group: the group has no data left
    p_left = np.where(alone, 0.0, p_left)
    sum_left = np.where(alone, 0.0, p_g * ybar_g - y / v[:, None, :])
    shrink_left = 1.0 + sg_sq * p_left
    prec_left = 1.0 / s0_sq + w - 1.0 / var_g + p_left / shrink_left
    S_left = 1.0 / prec_left
    M_left = (m0 / s0_sq + wy - ybar_g / var_g + sum_left / shrink_left) * S_left
    left = _log_normal(y, (sg_sq * sum_left + M_left) / shrink_left,
                       v[:, None, :] + sg_sq / shrink_left + S_left / shrink_left**2)
    return full, left


def _logsumexp_nodes(x: np.ndarray) -> np.ndarray:
    """``log(sum(exp(x)))`` over the first two axes of a 3-d array (all ``-inf`` gives ``-inf``)."""
    top = x.max(axis=(0, 1))
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return top + np.log(np.exp(x - top).sum(axis=(0, 1)))


def _log_normal(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (_LOG_2PI + np.log(var) + (x - mean) ** 2 / var)


#: Above this many unit-draws (n x draws), ``log sigma_unit`` is drawn at the cells' nodes.
JITTER_LIMIT = 20_000_000


def draw_posterior(post: NormalPosterior, q: Quadrature, size: int, rng: np.random.Generator, *, draw_theta: bool) -> dict:
    """``size`` independent draws from the quadrature posterior: a cell by its mass and a point
    uniformly within it, then ``mu``, ``mu_group`` and ``theta`` exactly from their normal
    conditionals (:func:`hbm_lib.models.normal.draw_conditionals`). With many units
    (``n x size > JITTER_LIMIT``) ``log sigma_unit`` stays at the cell's node, so that the pass over
    the units is done once per node instead of once per draw (the draws of ``sigma_unit`` then take
    the grid's node values). Returned in random order."""
    from hbm_lib.models.normal import draw_conditionals

    spec = post.spec
    if len(spec.y) * size <= JITTER_LIMIT:
        rng_cell, rng_rest = rng.spawn(2)
        cells = rng_cell.choice(q.mass.size, size=size, p=q.mass.ravel())
        a_idx, b_idx = np.divmod(cells, q.mass.shape[1])
        jitter = rng_cell.random((2, size)) - 0.5
        s_u = q.s_u[a_idx] + jitter[0] * (q.s_u[1] - q.s_u[0])
        s_g = q.s_g[b_idx] + jitter[1] * (q.s_g[1] - q.s_g[0]) if q.three_level else None
        out = draw_conditionals(spec, np.exp(s_u), None if s_g is None else np.exp(s_g), rng_rest, draw_theta=draw_theta)
        out["sigma_unit"] = np.exp(s_u)
        if q.three_level:
            out["sigma_group"] = np.exp(s_g)
        return {k: v for k, v in out.items() if v is not None}
    m0, s0_sq = spec.mu_prior_mean, spec.mu_prior_sd**2
    rng_cell, rng_mu, rng_group, rng_theta, rng_order = rng.spawn(5)
    cells = rng_cell.choice(q.mass.size, size=size, p=q.mass.ravel())
    a_idx, b_idx = np.divmod(cells, q.mass.shape[1])
    s_g = q.s_g[b_idx] + (rng_cell.random(size) - 0.5) * (q.s_g[1] - q.s_g[0]) if q.three_level else None
    out = {"sigma_unit": np.exp(q.s_u[a_idx]), "mu": np.empty(size)}
    if q.three_level:
        out["sigma_group"] = np.exp(s_g)
        out["mu_group"] = np.empty((size, post.n_groups))
    if draw_theta:
        out["theta"] = np.empty((size, len(spec.y)))
    for a in np.unique(a_idx):
        rows = np.flatnonzero(a_idx == a)
        unit = post.unit_pass(float(q.s_u[a]))
        g = post.group_pass(unit, s_g[rows] if q.three_level else np.array([-np.inf]))
        b = s0_sq / (s0_sq + 1.0 / g["w"])
        mu = m0 + b * (g["ybar"] - m0) + np.sqrt(b / g["w"]) * rng_mu.standard_normal(len(rows))
        out["mu"][rows] = mu
        if q.three_level:
            b_g = g["sg_sq"][:, None] / g["var_g"]
            loc = mu[:, None] + b_g * (unit.ybar_g - mu[:, None])
            loc += np.sqrt(b_g / unit.p_g) * rng_group.standard_normal(loc.shape)
            out["mu_group"][rows] = loc
        else:
            loc = mu[:, None]
        if draw_theta:
            su_sq = math.exp(2.0 * q.s_u[a])
            w = su_sq / (post.se_sq + su_sq)
            loc_i = loc[:, post.codes]
            out["theta"][rows] = loc_i + w * (spec.y - loc_i) + np.sqrt(w * post.se_sq) * rng_theta.standard_normal(loc_i.shape)
    order = rng_order.permutation(size)
    return {name: values[order] for name, values in out.items()}

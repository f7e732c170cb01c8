"""The hierarchical beta-binomial model of success counts per unit (variant, arm, litter, ...).

``successes[j] ~ Binomial(trials[j], rate[j])`` and ``rate[j] ~ Beta(a, b)``, with the hyperprior
``p(a, b) ∝ (a + b)^(-5/2)`` of Gelman et al. (BDA3, sec. 5.3), or with ``a`` and ``b`` fixed.
:func:`beta_binomial` builds the PyMC model; ``fit(model, method="grid")`` computes the same
posterior on a grid, without MCMC (:func:`grid_posterior` and ``hbm_lib.models._binomial_grid``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from numpy.typing import ArrayLike
from scipy.special import expit as _expit
from scipy.special import gammaln as _gammaln

from hbm_lib import _sampling
from hbm_lib._validation import (
    DEFAULT_SEED,
    Seed,
    align,
    as_finite_1d,
    as_generator,
    check_int,
    check_choice,
    check_dim_name,
    check_positive,
    check_same_length,
    unit_labels,
)
from hbm_lib.models._binomial_grid import GRID_DROP, BetaBinomialGrid, log_rising
from hbm_lib.models._registry import register

__all__ = ["beta_binomial"]

PARAMETERIZATIONS = ("marginal", "centered")


@dataclass(frozen=True)
class BetaBinomialSpec:
    """What :func:`hbm_lib.fit` needs to know about a model built by :func:`beta_binomial`."""

    successes: np.ndarray
    trials: np.ndarray
    units: pd.Index
    parameterization: str
    fixed: tuple[float, float] | None  # (a, b) when the Beta prior is fixed
    unit_dim: str
    family: str = "beta_binomial"

    def fit_nuts(self, model, settings, options, *, keep_theta: bool, keep_log_likelihood: bool) -> xr.DataTree:
        """Sample with NUTS (nothing to sample when ``a`` and ``b`` are fixed: exact draws), then
        draw every rate exactly in the marginal form."""
        labels = _sampling.coord(model, self.unit_dim)
        rng = _sampling.conditional_rng(settings["random_seed"])
        if self.parameterization == "marginal" and self.fixed is not None:
            idata = xr.DataTree.from_dict({"posterior": self._conjugate_draws(settings, labels, rng)})
        else:
            idata = _sampling.sample_nuts(model, settings, options)
            posterior = idata["posterior"]
            if self.parameterization == "marginal":
                a = posterior["a"].to_numpy()
                rate = draw_rates(self.successes, self.trials, a.ravel(), posterior["b"].to_numpy().ravel(), rng)
                posterior["rate"] = xr.DataArray(
                    rate.reshape(*a.shape, -1), dims=(*_sampling.SAMPLE_DIMS, self.unit_dim), coords={self.unit_dim: labels}
                )
        self._finish(idata, labels, keep_log_likelihood)
        return idata

    def fit_grid(self, model, settings, *, keep_theta: bool, keep_log_likelihood: bool, draw_budget: int) -> xr.DataTree:
        """The exact posterior: conjugate draws when ``a`` and ``b`` are fixed, else the 2-d grid."""
        labels = _sampling.coord(model, self.unit_dim)
        rng = _sampling.conditional_rng(settings["random_seed"])
        if self.fixed is not None:
            posterior = self._conjugate_draws(settings, labels, rng)
        else:
            posterior = grid_posterior(
                self.successes, self.trials, self.units, self.unit_dim, settings["chains"], settings["draws"], 200, rng
            ).assign_coords({self.unit_dim: labels})
        idata = xr.DataTree.from_dict({"posterior": posterior})
        self._finish(idata, labels, keep_log_likelihood)
        return idata

    def _finish(self, idata, labels, keep_log_likelihood: bool) -> None:
        if keep_log_likelihood:
            posterior = idata["posterior"]
            a, b = (posterior[k].to_numpy()[..., None] for k in ("a", "b"))
            loglik = betabinom_logpmf(self.successes, self.trials, a, b)
            _sampling.add_log_likelihood(idata, "successes", loglik, self.unit_dim, labels)
        _sampling.add_observed(idata, "successes", self.successes, self.unit_dim, labels)

    def _conjugate_draws(self, settings, labels, rng) -> xr.Dataset:
        """``chains x draws`` independent draws of every rate from ``Beta(a + y, b + n - y)``."""
        chains, draws = settings["chains"], settings["draws"]
        a0, b0 = self.fixed
        constant = np.ones((chains, draws))
        size = chains * draws
        rate = draw_rates(self.successes, self.trials, np.full(size, a0), np.full(size, b0), rng)
        sample = _sampling.SAMPLE_DIMS
        posterior = xr.Dataset(
            {
                "phi": (sample, constant * (a0 / (a0 + b0))),
                "log_kappa": (sample, constant * math.log(a0 + b0)),
                "kappa": (sample, constant * (a0 + b0)),
                "a": (sample, constant * a0),
                "b": (sample, constant * b0),
                "rate": ((*sample, self.unit_dim), rate.reshape(chains, draws, -1)),
            },
            coords={"chain": np.arange(chains), "draw": np.arange(draws), self.unit_dim: labels},
        )
        return _sampling.mark_exact(posterior, "hbm_lib.fit (exact conjugate draws)")


def beta_binomial(
    successes: ArrayLike,
    trials: ArrayLike,
    *,
    units: ArrayLike | None = None,
    parameterization: Literal["marginal", "centered"] = "marginal",
    a: float | None = None,
    b: float | None = None,
    unit_dim: str = "unit",
) -> pm.Model:
    """Build the hierarchical beta-binomial model of success counts per unit.

    ``successes[j] ~ Binomial(trials[j], rate[j])`` and ``rate[j] ~ Beta(a, b)``, with the
    hyperprior ``p(a, b) ∝ (a + b)^(-5/2)`` of Gelman et al. (BDA3, sec. 5.3). NUTS explores the
    population mean rate ``phi = a / (a + b)`` and the log concentration ``log_kappa = log(a + b)``,
    on which that hyperprior is ``phi ~ Uniform(0, 1)`` and ``p(log_kappa) ∝ kappa^(-1/2)``.

    The hyperprior is improper, and the posterior is proper if and only if at least one unit
    has ``0 < successes < trials`` (checked). As ``kappa -> inf`` the prior density
    ``exp(-log_kappa / 2)`` is integrable and the likelihood bounded; as ``kappa -> 0`` the prior
    grows like ``exp(|log_kappa| / 2)``, and only such a unit makes the likelihood vanish there
    (like ``kappa``): with counts all at 0 or at ``trials`` (e.g. 0/10 and 10/10), rates at exactly
    0 or 1 fit perfectly and the posterior of ``kappa`` piles up at 0.

    Parameters
    ----------
    successes, trials : array-like of int
        Counts per unit (a variant of an A/B test, a litter, a hospital), ``0 <= successes <=
        trials``. A unit with ``trials == 0`` is allowed (its rate is then a draw from the
        population). Pandas Series are paired by index (and lend it as unit labels), arrays by
        position.
    units : array-like, optional
        Unique unit labels (default: the index of ``successes`` if it is a Series, else
        ``0..n-1``).
    parameterization : {"marginal", "centered"}, default "marginal"
        * ``"marginal"``: the rates are integrated out, so the likelihood is beta-binomial and
          NUTS samples only ``phi`` and ``log_kappa``; :func:`fit` then draws each rate exactly
          from its conditional posterior ``Beta(a + successes, b + trials - successes)``.
        * ``"centered"``: the rates are sampled by NUTS with a binomial likelihood.
    a, b : float, optional
        Give both (positive) to fix the Beta prior of the rates and skip the hyperprior; the
        posterior of each rate is then ``Beta(a + successes, b + trials - successes)`` exactly.
    unit_dim : str, default "unit"
        Name of the unit dimension (e.g. ``"variant"``).

    Returns
    -------
    pymc.Model
        With coords ``unit_dim``. Its posterior (after :func:`hbm_lib.fit`) holds ``phi``,
        ``log_kappa``, ``kappa = a + b``, ``a``, ``b`` and ``rate`` (dims ``unit_dim``) in
        both parameterizations (constants when ``a`` and ``b`` are fixed). The observed variable
        is ``successes``: beta-binomial in the marginal form, binomial in the centered one.

    Raises
    ------
    ValueError
        On negative, non-integer or non-finite counts, ``successes > trials``, mismatched
        lengths or labels, a single unit, no trials at all, no unit with ``0 < successes <
        trials`` (hyperprior only), duplicate or missing unit labels, only one of ``a`` and ``b``,
        an unknown ``parameterization`` or a bad ``unit_dim``; the message names the argument.

    Notes
    -----
    Change of variables. With ``a = phi * kappa`` and ``b = (1 - phi) * kappa``, the Jacobian is
    ``|d(a, b) / d(phi, kappa)| = |det [[kappa, phi], [-kappa, 1 - phi]]| = kappa``, so
    ``p(phi, kappa) ∝ kappa^(-5/2) * kappa = kappa^(-3/2)``; and ``d kappa = kappa d log_kappa``
    gives ``p(phi, log_kappa) ∝ kappa^(-1/2) = exp(-log_kappa / 2)`` on
    ``(0, 1) x (-inf, inf)``: flat in ``phi``, decaying in ``log_kappa``.

    Examples
    --------
    >>> model = beta_binomial([30, 50, 55, 60], [100, 100, 100, 100], units=list("ABCD"), unit_dim="variant")
    >>> [rv.name for rv in model.free_RVs]  # the marginal form samples the two hyperparameters
    ['phi', 'log_kappa']
    >>> model.coords["variant"]
    ('A', 'B', 'C', 'D')
    >>> centered = beta_binomial([30, 50, 55, 60], [100] * 4, parameterization="centered")
    >>> [rv.name for rv in centered.free_RVs]
    ['phi', 'log_kappa', 'rate']
    """
    parameterization = check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    fixed = _check_fixed_ab(a, b)
    y, n, labels = check_binomial_counts(successes, trials, units, need_interior=fixed is None)
    unit_dim = check_dim_name(unit_dim, "unit_dim")

    with pm.Model(coords={unit_dim: labels.tolist()}) as model:
        if fixed is None:
            phi = pm.Uniform("phi", 0.0, 1.0)
            log_kappa = pm.Flat("log_kappa")
            # Hyperprior p(a, b) ∝ (a + b)^(-5/2) in the sampled coordinates. With a = phi kappa,
            # b = (1 - phi) kappa: |d(a, b)/d(phi, kappa)| = kappa (1 - phi) + phi kappa = kappa,
            # so p(phi, kappa) ∝ kappa^(-5/2) kappa = kappa^(-3/2); then d kappa = kappa d log_kappa
            # gives p(phi, log_kappa) ∝ kappa^(-1/2): log density -log_kappa / 2 (phi uniform).
            pm.Potential("hyperprior", -0.5 * log_kappa)
            kappa = pm.Deterministic("kappa", pt.exp(log_kappa))
            a_var = pm.Deterministic("a", phi * kappa)
            b_var = pm.Deterministic("b", (1.0 - phi) * kappa)
        else:
            a0, b0 = fixed
            pm.Deterministic("phi", pt.as_tensor_variable(a0 / (a0 + b0)))
            pm.Deterministic("log_kappa", pt.as_tensor_variable(math.log(a0 + b0)))
            pm.Deterministic("kappa", pt.as_tensor_variable(a0 + b0))
            a_var = pm.Deterministic("a", pt.as_tensor_variable(a0))
            b_var = pm.Deterministic("b", pt.as_tensor_variable(b0))
        if parameterization == "marginal":
            pm.BetaBinomial("successes", alpha=a_var, beta=b_var, n=n, observed=y, dims=unit_dim)
        else:
            rate = pm.Beta("rate", alpha=a_var, beta=b_var, dims=unit_dim)
            pm.Binomial("successes", n=n, p=rate, observed=y, dims=unit_dim)

    spec = BetaBinomialSpec(
        successes=y, trials=n, units=labels, parameterization=parameterization, fixed=fixed, unit_dim=unit_dim
    )
    return register(model, spec)




def grid_posterior(y, n, labels, unit_dim: str, chains: int, draws: int, grid_size: int, rng) -> xr.Dataset:
    """``chains x draws`` independent draws from the exact posterior of the beta-binomial model
    (what ``fit(beta_binomial(...), method="grid")`` returns), as a posterior Dataset marked as exact.

    The posterior of ``(logit(phi), log_kappa)`` is evaluated on a grid, grid cells are drawn with
    probability proportional to their mass and a point is drawn uniformly within each chosen
    cell; each rate is then drawn from ``Beta(a + successes, b + trials - successes)``. A call
    takes a few tens of ms for a handful of units (the cost grows with the number of distinct
    counts), so a simulation can run it on thousands of data sets.

    How the grid is placed. The grid has ``grid_size`` rows (values of ``log_kappa``) and, in each
    row, ``grid_size`` cells of ``logit(phi)`` spanning that row's own conditional range, so that
    the narrow conditional of ``phi`` given a large ``kappa`` is resolved as well as the wide one
    given a small ``kappa``. A range (in ``logit(phi)`` within a row, in ``log_kappa`` for the
    row masses) is found by repeated coarse evaluations: it is widened while the log density
    within 14 of its maximum touches an end, and narrowed (keeping two cells of margin) while
    that region covers less than half of it. So the density at every edge of the final grid is
    below ``exp(-14)`` (about 1e-6) of its peak, and the mass left outside is of that order (the
    ``log_kappa`` tails are at worst exponential, ``exp(-log_kappa / 2)``). The largest edge
    values found are stored in the posterior's attrs (``grid_edge_log_density`` for the row ends,
    ``grid_edge_log_mass`` for the first and last rows, both relative to the peak), and a
    ``UserWarning`` is issued if either exceeds -10, which only happens when a range reaches its
    hard limit (``|logit(phi)| <= 40``, ``-60 <= log_kappa <= 80``).
    """
    grid = BetaBinomialGrid(y, n)
    t_lo, t_hi, seed_t, seed_lo, seed_hi = grid.find_log_kappa_range()
    t_step = (t_hi - t_lo) / grid_size
    t = t_lo + (np.arange(grid_size) + 0.5) * t_step
    # start each row from the range found for the nearest coarse rows, then let it adjust
    lo = np.interp(t, seed_t, seed_lo)
    hi = np.interp(t, seed_t, seed_hi)
    lo, hi = grid.zoom_rows(t, lo, hi)
    u_step = (hi - lo) / grid_size
    u = lo[:, None] + (np.arange(grid_size) + 0.5) * u_step[:, None]
    logp = grid.log_density(u, t)
    row_max = logp.max(axis=1)
    log_mass = logp + np.log(u_step)[:, None]  # t_step is the same in every row
    peak = log_mass.max()
    weights = np.exp(log_mass - peak)
    with np.errstate(divide="ignore"):  # a row far out may underflow to 0 mass: log 0 = -inf
        row_log_mass = np.log(weights.sum(axis=1)) + peak
    # how high the density gets at the ends of the rows that carry mass, and how much mass the
    # first and last rows carry, relative to the peak: both far below 0 when the grid holds it all
    heavy_rows = row_log_mass > row_log_mass.max() - GRID_DROP
    edge_density = float(np.max(np.maximum(logp[heavy_rows, 0], logp[heavy_rows, -1]) - row_max[heavy_rows]))
    edge_mass = float(max(row_log_mass[0], row_log_mass[-1]) - row_log_mass.max())
    if edge_density > -10.0 or edge_mass > -10.0:
        warnings.warn(
            "grid posterior: posterior mass reaches the edge of the grid (relative log "
            f"density {edge_density:.1f} at a logit(phi) edge, {edge_mass:.1f} in an edge row of "
            "log_kappa); the draws may miss part of a very wide posterior",
            UserWarning,
            stacklevel=4,
        )

    # draw cells by inverting the cumulative mass, then a uniform point within each cell
    size = chains * draws
    cumulative = np.cumsum(weights.ravel())
    cells = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    cells = np.minimum(cells, cumulative.size - 1)
    row, col = np.divmod(cells, grid_size)
    jitter = rng.random((2, size)) - 0.5
    u_draw = u[row, col] + jitter[0] * u_step[row]
    log_kappa = t[row] + jitter[1] * t_step
    phi = _expit(u_draw)
    kappa = np.exp(log_kappa)
    a_draw = phi * kappa
    b_draw = _expit(-u_draw) * kappa
    rate = draw_rates(y, n, a_draw, b_draw, rng)

    sample = ("chain", "draw")
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), unit_dim: labels.tolist()}
    shape = (chains, draws)
    posterior = xr.Dataset(
        {
            "phi": (sample, phi.reshape(shape)),
            "log_kappa": (sample, log_kappa.reshape(shape)),
            "kappa": (sample, kappa.reshape(shape)),
            "a": (sample, a_draw.reshape(shape)),
            "b": (sample, b_draw.reshape(shape)),
            "rate": ((*sample, unit_dim), rate.reshape(*shape, -1)),
        },
        coords=coords,
        attrs={
            "grid_size": grid_size,
            "grid_log_kappa_range": [float(t_lo), float(t_hi)],
            "grid_edge_log_density": edge_density,
            "grid_edge_log_mass": edge_mass,
        },
    )
    return _sampling.mark_exact(posterior, "hbm_lib (exact grid posterior)")


# --------------------------------------------------------------------------------------------
# counts, checks and the beta-binomial pmf


def betabinom_logpmf(y: np.ndarray, n: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Beta-binomial log pmf ``log C(n, y) + log B(y + a, n - y + b) - log B(a, b)``, broadcast.

    ``a`` and ``b`` have a trailing axis of length 1 (or broadcast against ``y``); computed with
    :func:`log_rising`, so it stays accurate when ``a + b`` is huge.
    """
    y = np.asarray(y, dtype=float)
    n = np.asarray(n, dtype=float)
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    shape = np.broadcast_shapes(a.shape, y.shape)
    out = np.empty(shape)
    log_choose = _gammaln(n + 1.0) - _gammaln(y + 1.0) - _gammaln(n - y + 1.0)
    for j in range(y.shape[-1]):
        a_j = np.broadcast_to(a[..., 0] if a.shape[-1] == 1 else a[..., j], shape[:-1])
        b_j = np.broadcast_to(b[..., 0] if b.shape[-1] == 1 else b[..., j], shape[:-1])
        out[..., j] = (
            log_choose[j]
            + log_rising(a_j, y[j])
            + log_rising(b_j, n[j] - y[j])
            - log_rising(a_j + b_j, n[j])
        )
    return out


def draw_rates(
    y: np.ndarray, n: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One draw of every rate from ``Beta(a + y, b + n - y)`` per value of ``(a, b)``: (draws, J)."""
    a = np.asarray(a, dtype=float)[:, None]
    b = np.asarray(b, dtype=float)[:, None]
    return rng.beta(a + y, b + (n - y))


def _check_fixed_ab(a: Any, b: Any) -> tuple[float, float] | None:
    if a is None and b is None:
        return None
    if a is None or b is None:
        given, missing = ("a", "b") if b is None else ("b", "a")
        raise ValueError(
            f"{missing} is missing: give both a and b to fix the Beta prior of the rates (only "
            f"{given} was given), or neither to use the hyperprior"
        )
    return check_positive(a, "a"), check_positive(b, "b")


def as_counts(x: ArrayLike, name: str) -> np.ndarray:
    """Non-negative whole numbers as an int64 array, or a ``ValueError`` naming ``name``."""
    arr = as_finite_1d(x, name)
    negative = arr < 0
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise ValueError(f"{name} must be non-negative counts; got {arr[i]:g} at position {i}")
    fractional = arr != np.floor(arr)
    if fractional.any():
        i = int(np.flatnonzero(fractional)[0])
        raise ValueError(f"{name} must be whole numbers (counts); got {arr[i]:g} at position {i}")
    return arr.astype(np.int64)


def check_successes_within_trials(y: np.ndarray, n: np.ndarray) -> None:
    over = y > n
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise ValueError(
            f"successes must not exceed trials; got successes {y[i]} > trials {n[i]} at position {i}"
        )


def check_binomial_counts(
    successes: ArrayLike, trials: ArrayLike, units: ArrayLike | None, *, need_interior: bool
) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """The checks of :func:`beta_binomial` (aligned by label)."""
    aligned = align(successes=successes, trials=trials, units=units)
    successes, trials, units = aligned["successes"], aligned["trials"], aligned["units"]
    y = as_counts(successes, "successes")
    n = as_counts(trials, "trials")
    count = check_same_length(successes=y, trials=n)
    check_successes_within_trials(y, n)
    labels = unit_labels(units, successes if isinstance(successes, pd.Series) else trials, count)
    if count < 2:
        raise ValueError(
            f"successes has one unit only ({labels[0]!r}); the hierarchical model needs at "
            "least 2 units to learn how much the rates vary"
        )
    if n.sum() == 0:
        raise ValueError("trials are all 0: there are no data (every unit has trials == 0)")
    if need_interior and not ((y > 0) & (y < n)).any():
        raise ValueError(
            "successes: no unit has 0 < successes < trials, so the posterior under the "
            "(a + b)^(-5/2) hyperprior is improper (kappa -> 0, every rate at 0 or 1, fits as well "
            "as anything); fix a and b, or add data"
        )
    return y, n, labels



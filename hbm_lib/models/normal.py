"""The hierarchical normal model of unit estimates with known standard errors.

Each unit ``i`` reports an estimate ``y[i]`` of its true effect ``theta[i]`` with a known standard
error ``se[i]``. The model is

* two levels (no ``groups``)::

      y[i]     ~ Normal(theta[i], se[i])
      theta[i] ~ Normal(mu, sigma_unit)
      mu       ~ Normal(mu_prior_mean, mu_prior_sd)

* three levels (``groups`` given, at least two of them)::

      y[i]         ~ Normal(theta[i], se[i])
      theta[i]     ~ Normal(mu_group[g[i]], sigma_unit)
      mu_group[g]  ~ Normal(mu, sigma_group)
      mu           ~ Normal(mu_prior_mean, mu_prior_sd)

with a half-normal, half-Cauchy or uniform prior on each standard deviation.

:func:`hierarchical_normal` builds the PyMC model in one of three parameterizations that share the
same posterior: ``"centered"`` (the textbook form), ``"non_centered"`` (``theta`` written as
``mu + sigma_unit * offset``) and ``"marginal"`` (the default), where ``theta``, the group means
and ``mu`` are integrated out analytically so that NUTS only explores the standard deviations;
:func:`hbm_lib.fit` then draws the integrated-out parameters exactly from their normal conditional
posteriors.

The marginal likelihood
-----------------------
With ``v[i] = se[i]^2 + sigma_unit^2``, ``P[g] = sum_{i in g} 1 / v[i]`` and
``ybar[g] = sum_{i in g} (y[i] / v[i]) / P[g]``, completing the square gives the identity::

    prod_i N(y[i] | m, v[i]) = prod_i N(y[i] | ybar, v[i]) * N(ybar | m, 1 / P) * sqrt(2 pi / P)

which collapses one level of normals onto its precision-weighted mean. Applied to the units of
each group (with ``mu_group[g] ~ N(mu, sigma_group^2)``, so ``ybar[g] | mu ~ N(mu, 1/P[g] +
sigma_group^2)``) and then once more to the groups (with ``mu ~ N(mu_prior_mean,
mu_prior_sd^2)``), it gives ``log p(y | sigma_unit, sigma_group)`` in ``O(n)`` operations, without
ever forming the ``n x n`` covariance matrix of ``y``.
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

from hbm_lib import _sampling
from hbm_lib._validation import (
    align,
    as_finite_1d,
    as_labels,
    as_positive_1d,
    check_choice,
    check_dim_name,
    check_finite,
    check_positive,
    check_same_length,
    unit_labels,
)
from hbm_lib.models._priors import SdPrior, check_sd_prior, sd_variable
from hbm_lib.models._registry import register

__all__ = ["hierarchical_normal"]

Parameterization = Literal["centered", "non_centered", "marginal"]
PARAMETERIZATIONS = ("centered", "non_centered", "marginal")
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class NormalSpec:
    """What :func:`hbm_lib.fit` needs to know about a model built by :func:`hierarchical_normal`."""

    y: np.ndarray
    se: np.ndarray
    codes: np.ndarray | None  # group code per unit; None for the two-level model
    units: pd.Index
    groups: pd.Index | None
    parameterization: str
    mu_prior_mean: float
    mu_prior_sd: float
    sigma_unit_prior: SdPrior
    sigma_group_prior: SdPrior | None
    unit_dim: str
    group_dim: str
    family: str = "hierarchical_normal"

    @property
    def three_level(self) -> bool:
        return self.codes is not None

    def fit_nuts(self, model, settings, options, *, keep_theta: bool, keep_log_likelihood: bool) -> xr.DataTree:
        """Sample with NUTS; in the marginal form draw ``mu``, ``mu_group`` and ``theta`` exactly."""
        idata = _sampling.sample_nuts(model, settings, options)
        posterior = idata["posterior"]
        sigma_unit = posterior["sigma_unit"].to_numpy()
        if self.parameterization == "marginal":
            sigma_group = posterior["sigma_group"].to_numpy() if self.three_level else None
            drawn = draw_conditionals(
                self, sigma_unit.ravel(), None if sigma_group is None else sigma_group.ravel(),
                _sampling.conditional_rng(settings["random_seed"]), draw_theta=keep_theta,
            )
            for name, dims in self._dims(keep_theta).items():
                posterior[name] = xr.DataArray(
                    drawn[name].reshape(*sigma_unit.shape, *([-1] if dims else [])),
                    dims=(*_sampling.SAMPLE_DIMS, *dims),
                    coords={dim: _sampling.coord(model, dim) for dim in dims},
                )
        elif not keep_theta:
            idata["posterior"] = posterior.to_dataset().drop_vars(["theta", "theta_offset", self.unit_dim], errors="ignore")
        if keep_log_likelihood:
            self.add_log_likelihood(idata)
        _sampling.add_observed(idata, "y", self.y, self.unit_dim, self.unit_coord)
        return idata

    def fit_grid(self, model, settings, *, keep_theta: bool, keep_log_likelihood: bool, draw_budget: int) -> xr.DataTree:
        """The exact posterior by quadrature over the standard deviations (``._normal_grid``)."""
        from hbm_lib.models import _normal_grid as grid  # here: the module needs SciPy and the spec

        post = grid.NormalPosterior(self)
        q = grid.quadrature(post)
        chains, draws = settings["chains"], settings["draws"]
        exact_theta = keep_theta  # the exact moments cost O(n) whatever the draws
        keep_theta, keep_log_likelihood = self._within_budget(chains * draws, keep_theta, keep_log_likelihood, draw_budget)
        drawn = grid.draw_posterior(post, q, chains * draws, _sampling.conditional_rng(settings["random_seed"]), draw_theta=keep_theta)
        dims = {"sigma_unit": (), **({"sigma_group": ()} if self.three_level else {}), **self._dims(keep_theta)}
        coords = {"chain": np.arange(chains), "draw": np.arange(draws), self.unit_dim: self.unit_coord}
        if self.three_level:
            coords[self.group_dim] = np.asarray(self.groups.tolist())
        posterior = xr.Dataset(
            {name: ((*_sampling.SAMPLE_DIMS, *d), drawn[name].reshape(chains, draws, *([-1] if d else []))) for name, d in dims.items()},
            coords={k: v for k, v in coords.items() if k in ("chain", "draw") or any(k in d for d in dims.values())},
        )
        posterior = _sampling.mark_exact(posterior, "hbm_lib.fit (exact grid posterior)").assign_attrs(
            grid_nodes=[len(q.s_u), len(q.s_g)], grid_box=[q.box[a] for a in sorted(q.box)], grid_edge_mass=q.edge_mass,
        )
        moments = grid.exact_moments(post, q, exact_theta)
        dim_of = {"mu": (), "mu_group": (self.group_dim,), "theta": (self.unit_dim,)}
        exact = xr.Dataset(
            {name: (dim_of[name.rsplit("_", 1)[0]], values) for name, values in moments.items()},
            coords={k: v for k, v in coords.items() if k not in ("chain", "draw") and (k != self.unit_dim or exact_theta)},
        )
        mass_dims = ("log_sigma_unit", "log_sigma_group") if self.three_level else ("log_sigma_unit",)
        mass = q.mass if self.three_level else q.mass[:, 0]
        nodes = {"log_sigma_unit": q.s_u, **({"log_sigma_group": q.s_g} if self.three_level else {})}
        grid_group = xr.Dataset({"mass": (mass_dims, mass)}, coords=nodes)
        groups = {"posterior": posterior, "exact_moments": exact, "grid": grid_group}
        if keep_log_likelihood:  # the exact leave-one-out densities, for hbm_lib.loo
            loo = grid.exact_loo(post, q)
            groups["exact_loo"] = xr.Dataset(
                {name: ((self.unit_dim,), loo[name]) for name in ("elpd_i", "lpd_i")},
                coords={self.unit_dim: self.unit_coord}, attrs={"edge_mass": loo["edge_mass"]},
            )
        idata = xr.DataTree.from_dict(groups)
        if keep_log_likelihood:
            self.add_log_likelihood(idata)
        _sampling.add_observed(idata, "y", self.y, self.unit_dim, self.unit_coord)
        return idata

    def _within_budget(self, size: int, keep_theta: bool, keep_log_likelihood: bool, budget: int) -> tuple[bool, bool]:
        """Draws of theta and the log-likelihood hold ``n x draws`` values each: skip them (with a
        warning) when that exceeds ``budget``."""
        n = len(self.y)
        if n * size <= budget or not (keep_theta or keep_log_likelihood):
            return keep_theta, keep_log_likelihood
        warnings.warn(
            f"fit(method='grid'): {n:,} units x {size:,} draws exceed draw_budget ({budget:,} values), so the "
            "draws of theta and the log-likelihood are left out; theta's exact posterior means and sds "
            "are in the exact_moments group. Ask for fewer draws or a larger draw_budget to keep them, "
            "or pass keep_theta=False, keep_log_likelihood=False",
            UserWarning,
            stacklevel=5,
        )
        return False, False

    def _dims(self, keep_theta: bool) -> dict[str, tuple[str, ...]]:
        dims: dict[str, tuple[str, ...]] = {"mu": ()}
        if self.three_level:
            dims["mu_group"] = (self.group_dim,)
        if keep_theta:
            dims["theta"] = (self.unit_dim,)
        return dims

    @property
    def unit_coord(self) -> np.ndarray:
        return np.asarray(self.units.tolist())

    def add_log_likelihood(self, idata: xr.DataTree) -> None:
        """``log N(y[i] | mu_group[g[i]], se[i]^2 + sigma_unit^2)`` per draw: theta integrated out."""
        posterior = idata["posterior"]
        sigma_unit = posterior["sigma_unit"].to_numpy()
        loc = posterior["mu_group"] if self.three_level else posterior["mu"]
        loc = loc.to_numpy().reshape(sigma_unit.size, -1)
        loglik = predictive_loglik(self.y, self.se, self.codes, loc, sigma_unit.ravel())
        _sampling.add_log_likelihood(idata, "y", loglik.reshape(*sigma_unit.shape, -1), self.unit_dim, self.unit_coord)


def hierarchical_normal(
    y: ArrayLike,
    se: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    units: ArrayLike | None = None,
    parameterization: Parameterization = "marginal",
    mu_prior_mean: float = 0.0,
    mu_prior_sd: float = 10.0,
    sigma_unit_prior: SdPrior = ("half_normal", 5.0),
    sigma_group_prior: SdPrior = ("half_normal", 5.0),
    unit_dim: str = "unit",
    group_dim: str = "group",
) -> pm.Model:
    """Build the normal hierarchical model of unit estimates with known standard errors.

    ``y[i] ~ N(theta[i], se[i])`` and ``theta[i] ~ N(mu_group[g[i]], sigma_unit)``; with
    ``groups``, ``mu_group[g] ~ N(mu, sigma_group)`` (three levels), otherwise every unit is
    centred on ``mu`` itself (two levels). ``mu ~ N(mu_prior_mean, mu_prior_sd)``.

    Parameters
    ----------
    y : array-like
        Unit estimates. A pandas Series lends its index as unit labels.
    se : array-like
        Their standard errors, all positive (treated as known). Pandas inputs (``y``, ``se``,
        ``groups``, ``units``) are paired by index, arrays by position.
    groups : array-like, optional
        One group label per unit, with at least two distinct groups: adds the group level.
    units : array-like, optional
        Unique unit labels (default: the index of ``y`` if it is a Series, else ``0..n-1``).
    parameterization : {"marginal", "centered", "non_centered"}, default "marginal"
        How the model is written for the sampler; all three have the same posterior.

        * ``"centered"``: ``theta`` and ``mu_group`` are sampled directly. Simple, but NUTS meets
          a funnel when the data say little about ``sigma_unit`` (divergences).
        * ``"non_centered"``: ``theta_offset ~ N(0, 1)`` and ``theta = mu_group[g] + sigma_unit *
          theta_offset`` (likewise ``mu_group_offset``); ``theta`` is a Deterministic.
        * ``"marginal"``: ``theta``, ``mu_group`` and ``mu`` are integrated out analytically and
          the log marginal likelihood enters as a ``pm.Potential`` costing ``O(n)``, so NUTS
          samples only ``sigma_unit`` (and ``sigma_group``). :func:`hbm_lib.fit` then draws the
          integrated-out parameters exactly, so the posterior holds the same variables.
    mu_prior_mean, mu_prior_sd : float
        Mean and (positive) sd of the normal prior on ``mu``.
    sigma_unit_prior, sigma_group_prior : tuple of (str, float)
        Prior of each standard deviation as ``(family, scale)`` with family ``"half_normal"``
        (sd ``scale``), ``"half_cauchy"`` (scale ``scale``) or ``"uniform"`` (on
        ``(0, scale)``). ``sigma_group_prior`` is used only with ``groups``.
    unit_dim, group_dim : str
        Names of the unit and group dimensions.

    Returns
    -------
    pymc.Model
        With coords ``unit_dim`` (unit labels) and, with groups, ``group_dim`` (group labels in
        order of first appearance). Its posterior (after :func:`hbm_lib.fit`) holds ``mu``,
        ``sigma_unit``, ``theta`` (dims ``unit_dim``) and, with groups, ``sigma_group`` and
        ``mu_group`` (dims ``group_dim``), whatever the parameterization. In the centered and
        non-centered forms the observed variable is ``y`` (dims ``unit_dim``); the marginal form
        has a potential ``y_marginal`` instead, and :func:`hbm_lib.fit` adds ``y`` to
        ``observed_data``.

    Raises
    ------
    ValueError
        On non-finite ``y`` or ``se``, non-positive ``se``, mismatched lengths or labels, empty
        input, an unknown ``parameterization``, a malformed prior, or ``groups`` of the wrong
        length or with a single group; the message names the argument.

    Examples
    --------
    >>> from hbm_lib.datasets import eight_schools
    >>> d = eight_schools()
    >>> model = hierarchical_normal(d["y"], d["sigma"], units=d["school"])
    >>> [rv.name for rv in model.free_RVs]  # the marginal form samples only the sd
    ['sigma_unit']
    >>> model.coords["unit"][:3]
    ('A', 'B', 'C')
    >>> centered = hierarchical_normal(d["y"], d["sigma"], parameterization="centered")
    >>> [rv.name for rv in centered.free_RVs]
    ['sigma_unit', 'mu', 'theta']
    """
    spec = _normal_spec(
        y, se, groups, units, parameterization, mu_prior_mean, mu_prior_sd, sigma_unit_prior,
        sigma_group_prior, unit_dim, group_dim,
    )
    coords: dict[str, Any] = {spec.unit_dim: spec.units.tolist()}
    if spec.three_level:
        coords[spec.group_dim] = spec.groups.tolist()
    with pm.Model(coords=coords) as model:
        sigma_unit = sd_variable("sigma_unit", spec.sigma_unit_prior)
        sigma_group = sd_variable("sigma_group", spec.sigma_group_prior) if spec.three_level else None
        if spec.parameterization == "marginal":
            n_groups = len(spec.groups) if spec.three_level else 1
            pm.Potential(
                "y_marginal",
                marginal_logp(spec.y, spec.se, spec.codes, n_groups, sigma_unit, sigma_group, spec.mu_prior_mean, spec.mu_prior_sd),
            )
        else:
            _explicit_levels(spec, sigma_unit, sigma_group)
    return register(model, spec)


def normal_spec(
    y: ArrayLike,
    se: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    units: ArrayLike | None = None,
    parameterization: Parameterization = "marginal",
    mu_prior_mean: float = 0.0,
    mu_prior_sd: float = 10.0,
    sigma_unit_prior: SdPrior = ("half_normal", 5.0),
    sigma_group_prior: SdPrior = ("half_normal", 5.0),
    unit_dim: str = "unit",
    group_dim: str = "group",
) -> NormalSpec:
    """The checked description of the model :func:`hierarchical_normal` would build, without the
    PyMC model: what the exact-posterior routes need when many models are compared (same
    arguments, same checks, same defaults)."""
    return _normal_spec(
        y, se, groups, units, parameterization, mu_prior_mean, mu_prior_sd, sigma_unit_prior,
        sigma_group_prior, unit_dim, group_dim,
    )


def _normal_spec(
    y, se, groups, units, parameterization, mu_prior_mean, mu_prior_sd, sigma_unit_prior, sigma_group_prior, unit_dim, group_dim
) -> NormalSpec:
    """Check and align the arguments of :func:`hierarchical_normal`."""
    aligned = align(y=y, se=se, groups=groups, units=units)
    y, se, groups, units = (aligned[k] for k in ("y", "se", "groups", "units"))
    y_arr = as_finite_1d(y, "y")
    se_arr = as_positive_1d(se, "se")
    n = check_same_length(y=y_arr, se=se_arr)
    labels = unit_labels(units, y if isinstance(y, pd.Series) else se, n)
    unit_dim = check_dim_name(unit_dim, "unit_dim")
    group_dim = check_dim_name(group_dim, "group_dim", taken=(unit_dim,))
    codes = group_labels = None
    if groups is not None:
        codes, group_labels = as_labels(groups, n, "groups")
        if len(group_labels) < 2:
            raise ValueError(
                f"groups has a single group ({group_labels[0]!r}) where several are needed: the "
                "three-level model needs at least 2 groups; omit groups= for the two-level model"
            )
    sg_prior = check_sd_prior(sigma_group_prior, "sigma_group_prior")
    return NormalSpec(
        y=y_arr, se=se_arr, codes=codes, units=labels, groups=group_labels,
        parameterization=check_choice(parameterization, "parameterization", PARAMETERIZATIONS),
        mu_prior_mean=check_finite(mu_prior_mean, "mu_prior_mean"),
        mu_prior_sd=check_positive(mu_prior_sd, "mu_prior_sd"),
        sigma_unit_prior=check_sd_prior(sigma_unit_prior, "sigma_unit_prior"),
        sigma_group_prior=sg_prior if codes is not None else None,
        unit_dim=unit_dim, group_dim=group_dim,
    )


def _explicit_levels(spec: NormalSpec, sigma_unit, sigma_group) -> None:
    """The centered or non-centered model's ``mu``, ``mu_group``, ``theta`` and likelihood."""
    centered = spec.parameterization == "centered"
    mu = pm.Normal("mu", spec.mu_prior_mean, spec.mu_prior_sd)
    if spec.three_level:
        if centered:
            mu_group = pm.Normal("mu_group", mu, sigma_group, dims=spec.group_dim)
        else:
            offset = pm.Normal("mu_group_offset", 0.0, 1.0, dims=spec.group_dim)
            mu_group = pm.Deterministic("mu_group", mu + sigma_group * offset, dims=spec.group_dim)
        loc = mu_group[spec.codes]
    else:
        loc = mu
    if centered:
        theta = pm.Normal("theta", loc, sigma_unit, dims=spec.unit_dim)
    else:
        offset = pm.Normal("theta_offset", 0.0, 1.0, dims=spec.unit_dim)
        theta = pm.Deterministic("theta", loc + sigma_unit * offset, dims=spec.unit_dim)
    pm.Normal("y", theta, spec.se, observed=spec.y, dims=spec.unit_dim)


# --------------------------------------------------------------------------------------------
# the marginal likelihood, the exact conditionals and the predictive log-likelihood


def _normal_logpdf(x, mean, var):
    """log N(x | mean, var), parameterized by the variance; works on tensors and arrays."""
    return -0.5 * (_LOG_2PI + pt.log(var) + (x - mean) ** 2 / var)


def _segment_sum(values, codes, n_groups):
    """Sum of ``values`` within each group: ``out[g] = sum(values[codes == g])``, in O(n)."""
    return pt.inc_subtensor(pt.zeros(n_groups, dtype=values.dtype)[codes], values)


def marginal_logp(y, se, codes, n_groups, sigma_unit, sigma_group, mu_prior_mean, mu_prior_sd):
    """``log p(y | sigma_unit, sigma_group)`` with theta, the group means and mu integrated out.

    A PyTensor scalar. ``codes`` (group of each unit, ``0..n_groups-1``, every group non-empty)
    and ``sigma_group`` are ``None`` for the two-level model. Any argument may be symbolic.
    """
    y = pt.as_tensor_variable(y)
    se = pt.as_tensor_variable(se)
    v = se**2 + sigma_unit**2  # var(y[i] | mu_group): theta[i] integrated out
    precision = 1.0 / v
    s0_sq = pt.as_tensor_variable(mu_prior_sd) ** 2

    if codes is None:
        # one group whose mean is mu itself
        p = pt.sum(precision)
        ybar = pt.sum(precision * y) / p
        within = pt.sum(_normal_logpdf(y, ybar, v)) + 0.5 * (_LOG_2PI - pt.log(p))
        return within + _normal_logpdf(ybar, mu_prior_mean, 1.0 / p + s0_sq)

    # level 1: units within groups collapse onto ybar_g | mu_g ~ N(mu_g, 1 / P_g). The codes as a
    # constant tensor: indexing with a NumPy array makes PyTensor inspect it at every use (about
    # a second per graph with 500,000 units)
    codes = pt.as_tensor_variable(codes)
    p_g = _segment_sum(precision, codes, n_groups)
    ybar_g = _segment_sum(precision * y, codes, n_groups) / p_g
    within = pt.sum(_normal_logpdf(y, ybar_g[codes], v)) + 0.5 * pt.sum(_LOG_2PI - pt.log(p_g))
    # level 2: with mu_g integrated out, ybar_g | mu ~ N(mu, V_g), V_g = 1 / P_g + sigma_group^2;
    # the identity again, with W = sum_g 1 / V_g and ybar = sum_g (ybar_g / V_g) / W, gives
    #   sum_g log N(ybar_g | ybar, V_g) + log(2 pi / W) / 2 + log N(ybar | mu, 1 / W)
    # level 3: with mu integrated out, ybar ~ N(mu_prior_mean, 1 / W + mu_prior_sd^2).
    # The two are summed by hand below: log(2 pi / W) / 2 - log(2 pi (1/W + s0^2)) / 2
    # = -log1p(s0^2 W) / 2, which stays accurate when s0^2 W is small.
    var_g = 1.0 / p_g + sigma_group**2
    w_g = 1.0 / var_g
    w = pt.sum(w_g)
    ybar = pt.sum(w_g * ybar_g) / w
    between = -0.5 * (n_groups * _LOG_2PI + pt.sum(pt.log(var_g)) + pt.sum(w_g * (ybar_g - ybar) ** 2))
    top = -0.5 * (pt.log1p(s0_sq * w) + (ybar - mu_prior_mean) ** 2 / (1.0 / w + s0_sq))
    return within + between + top


def _group_sums_2d(values: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Row-wise sums within groups; ``order`` sorts the columns by group, ``starts`` marks each."""
    return np.add.reduceat(values[:, order], starts, axis=1)


def draw_conditionals(
    spec: NormalSpec,
    sigma_unit: ArrayLike,
    sigma_group: ArrayLike | None,
    rng: np.random.Generator,
    *,
    draw_theta: bool = True,
) -> dict[str, np.ndarray | None]:
    """Exact draws of ``mu``, ``mu_group`` and ``theta`` given the standard deviations and ``y``.

    One joint draw per value of ``sigma_unit`` (and ``sigma_group``), in the order
    ``mu | sigmas, y``, then ``mu_group | mu, sigmas, y``, then ``theta | mu_group, sigma_unit, y``.

    The conditionals, with ``v = se^2 + sigma_unit^2``, ``P_g = sum_{i in g} 1/v_i``,
    ``ybar_g = sum_{i in g} (y_i / v_i) / P_g``, ``V_g = 1/P_g + sigma_group^2``,
    ``W = sum_g 1/V_g`` and ``ybar = sum_g (ybar_g / V_g) / W``:

    * ``mu``: prior ``N(m0, s0^2)`` and "datum" ``ybar ~ N(mu, 1/W)``, so shrinkage
      ``b = s0^2 / (s0^2 + 1/W)``, mean ``m0 + b (ybar - m0)``, variance ``b / W``;
    * ``mu_group[g]``: prior ``N(mu, sigma_group^2)`` and ``ybar_g ~ N(mu_g, 1/P_g)``, so
      ``b_g = sigma_group^2 / V_g``, mean ``mu + b_g (ybar_g - mu)``, variance ``b_g / P_g``;
    * ``theta[i]``: prior ``N(mu_g, sigma_unit^2)`` and ``y_i ~ N(theta_i, se_i^2)``, so
      ``w_i = sigma_unit^2 / v_i``, mean ``mu_g + w_i (y_i - mu_g)``, variance ``w_i se_i^2``.

    Written with shrinkage factors, the formulas stay finite as a standard deviation goes to 0.
    Each level draws from its own child stream of ``rng``, so the draws of ``mu`` and ``mu_group``
    do not depend on ``draw_theta`` or on the block size used to bound memory.

    Returns
    -------
    dict
        ``"mu"`` (draws,), ``"mu_group"`` (draws, groups) or None, ``"theta"`` (draws, n) or None.
    """
    y, se, n = spec.y, spec.se, len(spec.y)
    sigma_unit = np.atleast_1d(np.asarray(sigma_unit, dtype=float))
    n_draws = len(sigma_unit)
    three_level = sigma_group is not None
    codes = spec.codes if three_level else np.zeros(n, dtype=np.int64)
    n_groups = int(codes.max()) + 1
    if three_level:
        sigma_group = np.broadcast_to(np.asarray(sigma_group, dtype=float), (n_draws,))
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    m0, s0_sq, se_sq = spec.mu_prior_mean, spec.mu_prior_sd**2, se**2
    rng_mu, rng_group, rng_theta = rng.spawn(3)

    out = {
        "mu": np.empty(n_draws),
        "mu_group": np.empty((n_draws, n_groups)) if three_level else None,
        "theta": np.empty((n_draws, n)) if draw_theta else None,
    }
    block = max(1, _sampling.CHUNK_ELEMENTS // n)
    for start in range(0, n_draws, block):
        rows = slice(start, min(n_draws, start + block))
        m = rows.stop - rows.start
        su_sq = sigma_unit[rows, None] ** 2
        v = se_sq + su_sq
        p_g = _group_sums_2d(1.0 / v, order, starts)
        ybar_g = _group_sums_2d(y / v, order, starts) / p_g
        sg_sq = sigma_group[rows, None] ** 2 if three_level else 0.0
        var_g = 1.0 / p_g + sg_sq
        w = np.sum(1.0 / var_g, axis=1)
        ybar = np.sum(ybar_g / var_g, axis=1) / w
        b = s0_sq / (s0_sq + 1.0 / w)
        mu = m0 + b * (ybar - m0) + np.sqrt(b / w) * rng_mu.standard_normal(m)
        out["mu"][rows] = mu
        loc = mu[:, None]
        if three_level:
            b_g = sg_sq / var_g
            mg = mu[:, None] + b_g * (ybar_g - mu[:, None]) + np.sqrt(b_g / p_g) * rng_group.standard_normal((m, n_groups))
            out["mu_group"][rows] = mg
            loc = mg[:, codes]
        if draw_theta:
            w_i = su_sq / v
            out["theta"][rows] = loc + w_i * (y - loc) + np.sqrt(w_i * se_sq) * rng_theta.standard_normal((m, n))
    return out


def predictive_loglik(
    y: np.ndarray, se: np.ndarray, codes: np.ndarray | None, loc: np.ndarray, sigma_unit: np.ndarray
) -> np.ndarray:
    """``log N(y[i] | loc[s, g[i]], se[i]^2 + sigma_unit[s]^2)`` for each draw ``s``: (draws, n)."""
    n = len(y)
    codes = np.zeros(n, dtype=np.int64) if codes is None else codes
    out = np.empty((len(sigma_unit), n))
    block = max(1, _sampling.CHUNK_ELEMENTS // n)
    for start in range(0, len(sigma_unit), block):
        rows = slice(start, min(len(sigma_unit), start + block))
        v = se**2 + sigma_unit[rows, None] ** 2
        out[rows] = -0.5 * (_LOG_2PI + np.log(v) + (y - loc[rows][:, codes]) ** 2 / v)
    return out

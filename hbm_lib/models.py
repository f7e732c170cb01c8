"""PyMC builders for the book's hierarchical models, a seeded ``fit`` and ``check_convergence``.

Three families of models are built here; :func:`fit` samples any of them and post-processes the
result so that every posterior holds the same named variables whatever the parameterization.

* :func:`hierarchical_normal`: unit estimates with known standard errors (below).
* :func:`beta_binomial`: success counts per variant with Beta-distributed rates, and
  :func:`beta_binomial_grid`, an exact grid alternative that needs no MCMC (milliseconds).
* :func:`varying_slopes_logistic` (summary counts) and :func:`varying_slopes_logistic_from_rows`
  (one binary outcome per row): a logistic model with a varying intercept and a varying treatment
  effect per group.

Hierarchical normal model
-------------------------
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
:func:`fit` then draws the integrated-out parameters exactly from their normal conditional
posteriors. :func:`check_convergence` summarises R-hat, effective sample sizes and divergences
and warns about whatever fails.

The normal marginal likelihood
------------------------------
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

import contextlib
import logging
import math
import numbers
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from numpy.typing import ArrayLike
from scipy.special import expit as _expit
from scipy.special import gammaln as _gammaln

from hbm_lib._validation import (
    as_finite_1d,
    as_labels,
    as_positive_1d,
    check_same_length,
    group_dataset,
    unit_labels,
)

__all__ = [
    "hierarchical_normal",
    "beta_binomial",
    "beta_binomial_grid",
    "varying_slopes_logistic",
    "varying_slopes_logistic_from_rows",
    "fit",
    "check_convergence",
]

Parameterization = Literal["centered", "non_centered", "marginal"]
SdPrior = tuple[str, float]
#: ``("student_t", nu, mu, sigma)`` or ``("normal", mu, sigma)``
LocationPrior = tuple[Any, ...]

_PARAMETERIZATIONS = ("centered", "non_centered", "marginal")
_SD_FAMILIES = ("half_normal", "half_cauchy", "uniform")
_BB_PARAMETERIZATIONS = ("marginal", "centered")
_LOGISTIC_PARAMETERIZATIONS = ("non_centered", "centered")
_ROW_DIM = "row"  # observation dimension of the logistic models
_NUTS_SAMPLERS = ("pymc", "nutpie")
NutsSampler = Literal["pymc", "nutpie"]
#: NUTS implementation :func:`fit` uses unless told otherwise (chosen in ``benchmarks/samplers.py``).
DEFAULT_NUTS_SAMPLER: NutsSampler = "nutpie"
_LOG_2PI = math.log(2.0 * math.pi)

#: Seed used by :func:`fit` when none is given, so that two runs give identical numbers.
DEFAULT_SEED = 20_240_601
# second entropy word of the numpy stream used for the exact conditional draws, so that it is
# independent of the streams PyMC derives from the same seed for the chains
_CONDITIONAL_STREAM = 0x68626D

# how many float64 values one block of the post-processing may hold (32 MiB)
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class _Spec:
    """What :func:`fit` needs to know about a model built by :func:`hierarchical_normal`."""

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

    @property
    def three_level(self) -> bool:
        return self.codes is not None


@dataclass(frozen=True)
class _BetaBinomialSpec:
    """What :func:`fit` needs to know about a model built by :func:`beta_binomial`."""

    successes: np.ndarray
    trials: np.ndarray
    variants: pd.Index
    parameterization: str
    fixed: tuple[float, float] | None  # (a, b) when the Beta prior is fixed
    variant_dim: str


@dataclass(frozen=True)
class _LogisticSpec:
    """What :func:`fit` needs to know about a varying-slopes logistic model."""

    kind: str  # "counts" or "rows"
    groups: pd.Index
    parameterization: str
    group_dim: str


# keyed by the model object itself; an entry disappears with its model
_SPECS: weakref.WeakKeyDictionary[pm.Model, _Spec | _BetaBinomialSpec | _LogisticSpec] = (
    weakref.WeakKeyDictionary()
)


# --------------------------------------------------------------------------------------------
# model building


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
        Their standard errors, all positive (treated as known).
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
          samples only ``sigma_unit`` (and ``sigma_group``). :func:`fit` then draws the
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
        order of first appearance). Its posterior (after :func:`fit`) holds ``mu``,
        ``sigma_unit``, ``theta`` (dims ``unit_dim``) and, with groups, ``sigma_group`` and
        ``mu_group`` (dims ``group_dim``), whatever the parameterization. In the centered and
        non-centered forms the observed variable is ``y`` (dims ``unit_dim``); the marginal form
        has a potential ``y_marginal`` instead, and :func:`fit` adds ``y`` to ``observed_data``.

    Raises
    ------
    ValueError
        On non-finite ``y`` or ``se``, non-positive ``se``, mismatched lengths, empty input, an
        unknown ``parameterization``, a malformed prior, or ``groups`` of the wrong length or with
        a single group; the message names the argument.

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
    y_arr = as_finite_1d(y, "y")
    se_arr = as_positive_1d(se, "se")
    n = check_same_length(y=y_arr, se=se_arr)
    labels = unit_labels(units, y, n)
    parameterization = _check_parameterization(parameterization)
    m0 = _check_finite(mu_prior_mean, "mu_prior_mean")
    s0 = _check_positive(mu_prior_sd, "mu_prior_sd")
    su_prior = _check_sd_prior(sigma_unit_prior, "sigma_unit_prior")
    sg_prior = _check_sd_prior(sigma_group_prior, "sigma_group_prior")
    unit_dim, group_dim = _check_dims(unit_dim, group_dim)

    coords: dict[str, Any] = {unit_dim: labels.tolist()}
    if groups is None:
        codes, group_labels, sg_prior_used = None, None, None
    else:
        codes, group_labels = as_labels(groups, n, "groups")
        if len(group_labels) < 2:
            raise ValueError(
                f"groups has a single group ({group_labels[0]!r}) where several are needed: the "
                "three-level model needs at least 2 groups; omit groups= for the two-level model"
            )
        coords[group_dim] = group_labels.tolist()
        sg_prior_used = sg_prior

    with pm.Model(coords=coords) as model:
        sigma_unit = _sd_variable("sigma_unit", su_prior)
        sigma_group = _sd_variable("sigma_group", sg_prior) if codes is not None else None
        if parameterization == "marginal":
            n_groups = len(group_labels) if group_labels is not None else 1
            pm.Potential(
                "y_marginal",
                _marginal_logp(y_arr, se_arr, codes, n_groups, sigma_unit, sigma_group, m0, s0),
            )
        else:
            centered = parameterization == "centered"
            mu = pm.Normal("mu", m0, s0)
            if codes is None:
                loc = mu
            else:
                if centered:
                    mu_group = pm.Normal("mu_group", mu, sigma_group, dims=group_dim)
                else:
                    mu_group_offset = pm.Normal("mu_group_offset", 0.0, 1.0, dims=group_dim)
                    mu_group = pm.Deterministic(
                        "mu_group", mu + sigma_group * mu_group_offset, dims=group_dim
                    )
                loc = mu_group[codes]
            if centered:
                theta = pm.Normal("theta", loc, sigma_unit, dims=unit_dim)
            else:
                theta_offset = pm.Normal("theta_offset", 0.0, 1.0, dims=unit_dim)
                theta = pm.Deterministic("theta", loc + sigma_unit * theta_offset, dims=unit_dim)
            pm.Normal("y", theta, se_arr, observed=y_arr, dims=unit_dim)

    _SPECS[model] = _Spec(
        y=y_arr,
        se=se_arr,
        codes=codes,
        units=labels,
        groups=group_labels,
        parameterization=parameterization,
        mu_prior_mean=m0,
        mu_prior_sd=s0,
        sigma_unit_prior=su_prior,
        sigma_group_prior=sg_prior_used,
        unit_dim=unit_dim,
        group_dim=group_dim,
    )
    return model


def _sd_variable(name: str, prior: SdPrior):
    family, scale = prior
    if family == "half_normal":
        return pm.HalfNormal(name, sigma=scale)
    if family == "half_cauchy":
        return pm.HalfCauchy(name, beta=scale)
    return pm.Uniform(name, lower=0.0, upper=scale)


def _normal_logpdf(x, mean, var):
    """log N(x | mean, var), parameterized by the variance; works on tensors and arrays."""
    return -0.5 * (_LOG_2PI + pt.log(var) + (x - mean) ** 2 / var)


def _segment_sum(values, codes, n_groups):
    """Sum of ``values`` within each group: ``out[g] = sum(values[codes == g])``, in O(n)."""
    return pt.inc_subtensor(pt.zeros(n_groups, dtype=values.dtype)[codes], values)


def _marginal_logp(y, se, codes, n_groups, sigma_unit, sigma_group, mu_prior_mean, mu_prior_sd):
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

    # level 1: units within groups collapse onto ybar_g | mu_g ~ N(mu_g, 1 / P_g)
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
    between = -0.5 * (
        n_groups * _LOG_2PI + pt.sum(pt.log(var_g)) + pt.sum(w_g * (ybar_g - ybar) ** 2)
    )
    top = -0.5 * (pt.log1p(s0_sq * w) + (ybar - mu_prior_mean) ** 2 / (1.0 / w + s0_sq))
    return within + between + top


# --------------------------------------------------------------------------------------------
# beta-binomial model of success counts


def beta_binomial(
    successes: ArrayLike,
    trials: ArrayLike,
    *,
    variants: ArrayLike | None = None,
    parameterization: Literal["marginal", "centered"] = "marginal",
    a: float | None = None,
    b: float | None = None,
    variant_dim: str = "variant",
) -> pm.Model:
    """Build the hierarchical beta-binomial model of success counts per variant.

    ``successes[j] ~ Binomial(trials[j], rate[j])`` and ``rate[j] ~ Beta(a, b)``, with the
    hyperprior ``p(a, b) ∝ (a + b)^(-5/2)`` of Gelman et al. (BDA3, sec. 5.3). NUTS explores the
    population mean rate ``phi = a / (a + b)`` and the log concentration ``log_kappa = log(a + b)``,
    on which that hyperprior is ``phi ~ Uniform(0, 1)`` and ``p(log_kappa) ∝ kappa^(-1/2)``.

    The hyperprior is improper, and the posterior is proper if and only if at least one variant
    has ``0 < successes < trials`` (checked). As ``kappa -> inf`` the prior density
    ``exp(-log_kappa / 2)`` is integrable and the likelihood bounded; as ``kappa -> 0`` the prior
    grows like ``exp(|log_kappa| / 2)``, and only such a variant makes the likelihood vanish there
    (like ``kappa``): with counts all at 0 or at ``trials`` (e.g. 0/10 and 10/10), rates at exactly
    0 or 1 fit perfectly and the posterior of ``kappa`` piles up at 0.

    Parameters
    ----------
    successes, trials : array-like of int
        Counts per variant, ``0 <= successes <= trials``. A variant with ``trials == 0`` is
        allowed (its rate is then a draw from the population). A pandas Series ``successes`` lends
        its index as variant labels.
    variants : array-like, optional
        Unique variant labels (default: the index of ``successes`` if it is a Series, else
        ``0..n-1``).
    parameterization : {"marginal", "centered"}, default "marginal"
        * ``"marginal"``: the rates are integrated out, so the likelihood is beta-binomial and
          NUTS samples only ``phi`` and ``log_kappa``; :func:`fit` then draws each rate exactly
          from its conditional posterior ``Beta(a + successes, b + trials - successes)``.
        * ``"centered"``: the rates are sampled by NUTS with a binomial likelihood.
    a, b : float, optional
        Give both (positive) to fix the Beta prior of the rates and skip the hyperprior; the
        posterior of each rate is then ``Beta(a + successes, b + trials - successes)`` exactly.
    variant_dim : str, default "variant"
        Name of the variant dimension.

    Returns
    -------
    pymc.Model
        With coords ``variant_dim``. Its posterior (after :func:`fit`) holds ``phi``,
        ``log_kappa``, ``kappa = a + b``, ``a``, ``b`` and ``rate`` (dims ``variant_dim``) in
        both parameterizations (constants when ``a`` and ``b`` are fixed). The observed variable
        is ``successes``: beta-binomial in the marginal form, binomial in the centered one.

    Raises
    ------
    ValueError
        On negative, non-integer or non-finite counts, ``successes > trials``, mismatched
        lengths, a single variant, no trials at all, no variant with ``0 < successes < trials``
        (hyperprior only), duplicate or missing variant labels, only one of ``a`` and ``b``, an
        unknown ``parameterization`` or a bad ``variant_dim``; the message names the argument.

    Notes
    -----
    Change of variables. With ``a = phi * kappa`` and ``b = (1 - phi) * kappa``, the Jacobian is
    ``|d(a, b) / d(phi, kappa)| = |det [[kappa, phi], [-kappa, 1 - phi]]| = kappa``, so
    ``p(phi, kappa) ∝ kappa^(-5/2) * kappa = kappa^(-3/2)``; and ``d kappa = kappa d log_kappa``
    gives ``p(phi, log_kappa) ∝ kappa^(-1/2) = exp(-log_kappa / 2)`` on
    ``(0, 1) x (-inf, inf)``: flat in ``phi``, decaying in ``log_kappa``.

    Examples
    --------
    >>> model = beta_binomial([30, 50, 55, 60], [100, 100, 100, 100], variants=list("ABCD"))
    >>> [rv.name for rv in model.free_RVs]  # the marginal form samples the two hyperparameters
    ['phi', 'log_kappa']
    >>> model.coords["variant"]
    ('A', 'B', 'C', 'D')
    >>> centered = beta_binomial([30, 50, 55, 60], [100] * 4, parameterization="centered")
    >>> [rv.name for rv in centered.free_RVs]
    ['phi', 'log_kappa', 'rate']
    """
    if parameterization not in _BB_PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {_BB_PARAMETERIZATIONS}; got {parameterization!r}"
        )
    fixed = _check_fixed_ab(a, b)
    y, n, labels = _check_binomial_counts(
        successes, trials, variants, need_interior=fixed is None
    )
    variant_dim = _check_dim_name(variant_dim, "variant_dim")

    with pm.Model(coords={variant_dim: labels.tolist()}) as model:
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
            pm.BetaBinomial("successes", alpha=a_var, beta=b_var, n=n, observed=y, dims=variant_dim)
        else:
            rate = pm.Beta("rate", alpha=a_var, beta=b_var, dims=variant_dim)
            pm.Binomial("successes", n=n, p=rate, observed=y, dims=variant_dim)

    _SPECS[model] = _BetaBinomialSpec(
        successes=y,
        trials=n,
        variants=labels,
        parameterization=parameterization,
        fixed=fixed,
        variant_dim=variant_dim,
    )
    return model


def beta_binomial_grid(
    successes: ArrayLike,
    trials: ArrayLike,
    *,
    rng: np.random.Generator | int,
    n_draws: int = 4000,
    grid_size: int = 200,
    variants: ArrayLike | None = None,
    variant_dim: str = "variant",
) -> xr.DataTree:
    """Exact posterior draws of the beta-binomial model by a 2-d grid, without MCMC.

    The same model and hyperprior as :func:`beta_binomial` (marginal form). The posterior of
    ``(logit(phi), log_kappa)`` is evaluated on a grid, grid cells are drawn with probability
    proportional to their mass and a point is drawn uniformly within each chosen cell; each rate
    is then drawn from ``Beta(a + successes, b + trials - successes)``. A call takes about 10 ms
    for a handful of variants (the cost grows with the number of distinct counts), so a
    simulation can run it on thousands of data sets.

    How the grid is placed. The grid has ``grid_size`` rows (values of ``log_kappa``) and, in each
    row, ``grid_size`` cells of ``logit(phi)`` spanning that row's own conditional range, so that
    the narrow conditional of ``phi`` given a large ``kappa`` is resolved as well as the wide one
    given a small ``kappa``. A range (in ``logit(phi)`` within a row, in ``log_kappa`` for the
    row masses) is found by repeated coarse evaluations: it is widened while the log density
    within 14 of its maximum touches an end, and narrowed (keeping two cells of margin) while
    that region covers less than half of it. So the density at every edge of the final grid is
    below ``exp(-14)`` (about 1e-6) of its peak, and the mass left outside is of that order (the
    ``log_kappa`` tails are at worst exponential, ``exp(-log_kappa / 2)``). The largest edge
    values found are stored in ``posterior.attrs`` (``grid_edge_log_density`` for the row ends,
    ``grid_edge_log_mass`` for the first and last rows, both relative to the peak), and a
    ``UserWarning`` is issued if either exceeds -10, which only happens when a range reaches its
    hard limit (``|logit(phi)| <= 40``, ``-60 <= log_kappa <= 80``).

    Parameters
    ----------
    successes, trials : array-like of int
        Counts per variant, as for :func:`beta_binomial` (same checks).
    rng : numpy.random.Generator or int
        Random generator (or seed) for the draws.
    n_draws : int, default 4000
        Number of posterior draws.
    grid_size : int, default 200
        Rows (``log_kappa``) and cells per row (``logit(phi)``) of the grid, at least 20.
    variants : array-like, optional
        Unique variant labels, as for :func:`beta_binomial`.
    variant_dim : str, default "variant"
        Name of the variant dimension.

    Returns
    -------
    xarray.DataTree
        With a ``posterior`` group of one chain of ``n_draws`` draws holding ``phi``,
        ``log_kappa``, ``kappa``, ``a``, ``b`` and ``rate`` (dims ``variant_dim``), the same names
        as a :func:`fit` of :func:`beta_binomial`, so that :mod:`hbm_lib.decisions` and ArviZ work
        on both; and an ``observed_data`` group with ``successes``. The draws are independent.

    Raises
    ------
    ValueError
        On invalid counts or labels (as :func:`beta_binomial`), or bad ``n_draws``,
        ``grid_size`` or ``rng``.

    Examples
    --------
    >>> idata = beta_binomial_grid([30, 50, 55, 60], [100] * 4, variants=list("ABCD"), rng=1)
    >>> idata["posterior"]["rate"].dims
    ('chain', 'draw', 'variant')
    >>> idata["posterior"]["rate"].shape
    (1, 4000, 4)
    >>> round(float(idata["posterior"]["phi"].mean()), 1)
    0.5
    """
    y, n, labels = _check_binomial_counts(successes, trials, variants, need_interior=True)
    n_draws = _check_int(n_draws, "n_draws", minimum=1)
    grid_size = _check_int(grid_size, "grid_size", minimum=20)
    variant_dim = _check_dim_name(variant_dim, "variant_dim")
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng >= 0:
        rng = np.random.default_rng(int(rng))
    elif not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator or a non-negative int seed; got {rng!r}")

    grid = _BetaBinomialGrid(y, n)
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
    heavy_rows = row_log_mass > row_log_mass.max() - _GRID_DROP
    edge_density = float(np.max(np.maximum(logp[heavy_rows, 0], logp[heavy_rows, -1]) - row_max[heavy_rows]))
    edge_mass = float(max(row_log_mass[0], row_log_mass[-1]) - row_log_mass.max())
    if edge_density > -10.0 or edge_mass > -10.0:
        warnings.warn(
            "beta_binomial_grid: posterior mass reaches the edge of the grid (relative log "
            f"density {edge_density:.1f} at a logit(phi) edge, {edge_mass:.1f} in an edge row of "
            "log_kappa); the draws may miss part of a very wide posterior",
            UserWarning,
            stacklevel=2,
        )

    # draw cells by inverting the cumulative mass, then a uniform point within each cell
    cumulative = np.cumsum(weights.ravel())
    cells = np.searchsorted(cumulative, rng.random(n_draws) * cumulative[-1], side="right")
    cells = np.minimum(cells, cumulative.size - 1)
    row, col = np.divmod(cells, grid_size)
    jitter = rng.random((2, n_draws)) - 0.5
    u_draw = u[row, col] + jitter[0] * u_step[row]
    log_kappa = t[row] + jitter[1] * t_step
    phi = _expit(u_draw)
    kappa = np.exp(log_kappa)
    a_draw = phi * kappa
    b_draw = _expit(-u_draw) * kappa
    rate = _draw_rates(y, n, a_draw, b_draw, rng)

    sample = ("chain", "draw")
    coords = {"chain": [0], "draw": np.arange(n_draws), variant_dim: labels.tolist()}
    posterior = xr.Dataset(
        {
            "phi": (sample, phi[None]),
            "log_kappa": (sample, log_kappa[None]),
            "kappa": (sample, kappa[None]),
            "a": (sample, a_draw[None]),
            "b": (sample, b_draw[None]),
            "rate": ((*sample, variant_dim), rate[None]),
        },
        coords=coords,
        attrs={
            "inference_library": "hbm_lib.models.beta_binomial_grid",
            "grid_size": grid_size,
            "grid_log_kappa_range": [float(t_lo), float(t_hi)],
            "grid_edge_log_density": edge_density,
            "grid_edge_log_mass": edge_mass,
        },
    )
    observed = xr.Dataset(
        {"successes": ((variant_dim,), y.copy())}, coords={variant_dim: labels.tolist()}
    )
    return xr.DataTree.from_dict({"posterior": posterior, "observed_data": observed})


# relative log density below which the grid treats the posterior as negligible (exp(-14) ~ 8e-7)
_GRID_DROP = 14.0
_GRID_U_LIMIT = 40.0  # |logit(phi)|
_GRID_T_LIMITS = (-60.0, 80.0)  # log_kappa
_GRID_COARSE = 32  # cells per coarse evaluation
# above this, log Gamma(x + m) - log Gamma(x) is computed from Stirling's series (no cancellation)
_STIRLING_FROM = 1e5


class _BetaBinomialGrid:
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
            keep = logp > logp.max(axis=1, keepdims=True) - _GRID_DROP
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
            keep = row_log_mass > row_log_mass.max() - _GRID_DROP
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


def _log_rising(x: np.ndarray, m: float) -> np.ndarray:
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
    """``sum_m [log Gamma(x + m) - log Gamma(x)]`` over ``counts``, as in :func:`_log_rising`.

    Faster than summing :func:`_log_rising`: ``log Gamma(x)`` and ``log x`` are computed once,
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


def _betabinom_logpmf(y: np.ndarray, n: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Beta-binomial log pmf ``log C(n, y) + log B(y + a, n - y + b) - log B(a, b)``, broadcast.

    ``a`` and ``b`` have a trailing axis of length 1 (or broadcast against ``y``); computed with
    :func:`_log_rising`, so it stays accurate when ``a + b`` is huge.
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
            + _log_rising(a_j, y[j])
            + _log_rising(b_j, n[j] - y[j])
            - _log_rising(a_j + b_j, n[j])
        )
    return out


def _draw_rates(
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
    return _check_positive(a, "a"), _check_positive(b, "b")


def _as_counts(x: ArrayLike, name: str) -> np.ndarray:
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


def _check_successes_within_trials(y: np.ndarray, n: np.ndarray) -> None:
    over = y > n
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise ValueError(
            f"successes must not exceed trials; got successes {y[i]} > trials {n[i]} at position {i}"
        )


def _check_binomial_counts(
    successes: ArrayLike, trials: ArrayLike, variants: ArrayLike | None, *, need_interior: bool
) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Shared checks of :func:`beta_binomial` and :func:`beta_binomial_grid`."""
    y = _as_counts(successes, "successes")
    n = _as_counts(trials, "trials")
    count = check_same_length(successes=y, trials=n)
    _check_successes_within_trials(y, n)
    labels = unit_labels(variants, successes, count, name="variants", per="variant")
    if count < 2:
        raise ValueError(
            f"successes has one variant only ({labels[0]!r}); the hierarchical model needs at "
            "least 2 variants to learn how much the rates vary"
        )
    if n.sum() == 0:
        raise ValueError("trials are all 0: there are no data (every variant has trials == 0)")
    if need_interior and not ((y > 0) & (y < n)).any():
        raise ValueError(
            "successes: no variant has 0 < successes < trials, so the posterior under the "
            "(a + b)^(-5/2) hyperprior is improper (kappa -> 0, every rate at 0 or 1, fits as well "
            "as anything); fix a and b, or add data"
        )
    return y, n, labels


def _check_dim_name(dim: Any, name: str, *, taken: Sequence[str] = ()) -> str:
    if not isinstance(dim, str) or not dim:
        raise ValueError(f"{name} must be a non-empty string; got {dim!r}")
    if dim in ("chain", "draw", *taken):
        raise ValueError(f"{name} must not be {dim!r}: that name is taken")
    return dim


# --------------------------------------------------------------------------------------------
# varying-intercept, varying-slope logistic model


def varying_slopes_logistic(
    successes: ArrayLike,
    trials: ArrayLike,
    group: ArrayLike,
    treated: ArrayLike,
    *,
    parameterization: Literal["non_centered", "centered"] = "non_centered",
    mu_alpha_prior: LocationPrior = ("student_t", 3.0, 0.0, 1.0),
    mu_beta_prior: LocationPrior = ("student_t", 3.0, 0.0, 1.0),
    sigma_alpha_prior: SdPrior = ("half_normal", 1.0),
    sigma_beta_prior: SdPrior = ("half_normal", 1.0),
    group_dim: str = "group",
) -> pm.Model:
    """Build the varying-intercept, varying-slope logistic model from summary counts.

    For each row ``i`` (a group and an arm, control or treated) with ``trials[i]`` users of whom
    ``successes[i]`` converted::

        successes[i] ~ Binomial(trials[i], p[i])
        logit(p[i])  = alpha[g[i]] + beta[g[i]] * treated[i]
        alpha[g]     ~ Normal(mu_alpha, sigma_alpha)     (log-odds in the control arm)
        beta[g]      ~ Normal(mu_beta, sigma_beta)       (treatment effect, log odds ratio)

    with by default ``mu_alpha, mu_beta ~ StudentT(nu=3, 0, 1)`` and ``sigma_alpha, sigma_beta ~
    HalfNormal(1)``. :func:`varying_slopes_logistic_from_rows` builds the same model from one row
    per user; both give the same posterior.

    Parameters
    ----------
    successes, trials : array-like of int
        Counts per row, ``0 <= successes <= trials``. Usually one row per group and arm; several
        rows for the same group and arm (e.g. one per day) are allowed.
    group : array-like
        Group label of each row (e.g. the country); at least 2 groups.
    treated : array-like of {0, 1}
        Arm of each row: 0 for control, 1 for treated. Every group needs trials in both arms.
    parameterization : {"non_centered", "centered"}, default "non_centered"
        ``"centered"`` samples ``alpha`` and ``beta`` directly; ``"non_centered"`` samples
        ``alpha_offset, beta_offset ~ N(0, 1)`` and sets ``alpha = mu_alpha + sigma_alpha *
        alpha_offset`` (likewise ``beta``), which avoids the funnel when the group-level standard
        deviations are poorly determined (as with few groups).
    mu_alpha_prior, mu_beta_prior : tuple
        Prior of each population mean: ``("student_t", nu, mu, sigma)`` or ``("normal", mu,
        sigma)``.
    sigma_alpha_prior, sigma_beta_prior : tuple of (str, float)
        Prior of each group-level standard deviation as ``(family, scale)``: ``"half_normal"``,
        ``"half_cauchy"`` or ``"uniform"`` (on ``(0, scale)``), as in :func:`hierarchical_normal`.
    group_dim : str, default "group"
        Name of the group dimension (the rows have dimension ``"row"``).

    Returns
    -------
    pymc.Model
        With coords ``group_dim`` (labels in order of first appearance) and ``"row"``. Its
        posterior (after :func:`fit`) holds ``mu_alpha``, ``sigma_alpha``, ``mu_beta``,
        ``sigma_beta``, ``alpha`` and ``beta`` (dims ``group_dim``), and the Deterministics
        ``p_control = expit(alpha)``, ``p_treated = expit(alpha + beta)`` and ``lift = p_treated
        - p_control`` (dims ``group_dim``). The observed variable is ``successes`` (dims
        ``"row"``).

    Raises
    ------
    ValueError
        On invalid counts (negative, non-integer, non-finite, ``successes > trials``),
        ``treated`` not 0/1, mismatched lengths, a single group, a group without trials in one
        arm, a malformed prior, an unknown ``parameterization`` or a bad ``group_dim``; the
        message names the argument.

    Examples
    --------
    >>> model = varying_slopes_logistic(
    ...     successes=[30, 50, 55, 60], trials=[100, 100, 100, 100],
    ...     group=["Canada", "Canada", "China", "China"], treated=[0, 1, 0, 1],
    ... )
    >>> model.coords["group"]
    ('Canada', 'China')
    >>> [rv.name for rv in model.free_RVs]
    ['mu_alpha', 'sigma_alpha', 'mu_beta', 'sigma_beta', 'alpha_offset', 'beta_offset']
    """
    y = _as_counts(successes, "successes")
    n = _as_counts(trials, "trials")
    arm = _as_binary(treated, "treated")
    count = check_same_length(successes=y, trials=n, treated=arm)
    _check_successes_within_trials(y, n)
    codes, labels = as_labels(group, count, "group")
    _check_arms(codes, labels, arm, n)
    return _varying_slopes_model(
        "counts", y, n, codes, labels, arm, parameterization, mu_alpha_prior, mu_beta_prior,
        sigma_alpha_prior, sigma_beta_prior, group_dim,
    )


def varying_slopes_logistic_from_rows(
    outcome: ArrayLike,
    group: ArrayLike,
    treated: ArrayLike,
    *,
    parameterization: Literal["non_centered", "centered"] = "non_centered",
    mu_alpha_prior: LocationPrior = ("student_t", 3.0, 0.0, 1.0),
    mu_beta_prior: LocationPrior = ("student_t", 3.0, 0.0, 1.0),
    sigma_alpha_prior: SdPrior = ("half_normal", 1.0),
    sigma_beta_prior: SdPrior = ("half_normal", 1.0),
    group_dim: str = "group",
) -> pm.Model:
    """Build the varying-intercept, varying-slope logistic model from one row per user.

    The model of :func:`varying_slopes_logistic` with a Bernoulli likelihood on each row,
    ``outcome[i] ~ Bernoulli(p[i])``, ``logit(p[i]) = alpha[g[i]] + beta[g[i]] * treated[i]``.
    The rows are not aggregated: the posterior equals that of the count form on the summed counts
    (the binomial coefficient does not depend on the parameters), and the pointwise
    ``log_likelihood`` is per user rather than per cell.

    Parameters
    ----------
    outcome : array-like of {0, 1}
        Binary outcome of each user (e.g. converted or not).
    group : array-like
        Group label of each user; at least 2 groups.
    treated : array-like of {0, 1}
        Arm of each user: 0 for control, 1 for treated. Every group needs users in both arms.
    parameterization, mu_alpha_prior, mu_beta_prior, sigma_alpha_prior, sigma_beta_prior, group_dim
        As for :func:`varying_slopes_logistic`.

    Returns
    -------
    pymc.Model
        As :func:`varying_slopes_logistic`, with the observed variable ``outcome`` (dims
        ``"row"``).

    Raises
    ------
    ValueError
        On ``outcome`` or ``treated`` not 0/1 (or not finite), mismatched lengths, a single group,
        a group without users in one arm, or bad options; the message names the argument.

    Examples
    --------
    >>> model = varying_slopes_logistic_from_rows(
    ...     outcome=[1, 0, 0, 1, 1, 1, 0, 0], group=list("AAAABBBB"), treated=[0, 0, 1, 1] * 2,
    ... )
    >>> model.coords["group"], len(model.coords["row"])
    (('A', 'B'), 8)
    """
    y = _as_binary(outcome, "outcome")
    arm = _as_binary(treated, "treated")
    count = check_same_length(outcome=y, treated=arm)
    codes, labels = as_labels(group, count, "group")
    _check_arms(codes, labels, arm, np.ones(count, dtype=np.int64))
    return _varying_slopes_model(
        "rows", y, None, codes, labels, arm, parameterization, mu_alpha_prior, mu_beta_prior,
        sigma_alpha_prior, sigma_beta_prior, group_dim,
    )


def _varying_slopes_model(
    kind, y, n, codes, labels, arm, parameterization, mu_alpha_prior, mu_beta_prior,
    sigma_alpha_prior, sigma_beta_prior, group_dim,
) -> pm.Model:
    if parameterization not in _LOGISTIC_PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {_LOGISTIC_PARAMETERIZATIONS}; got {parameterization!r}"
        )
    priors = {
        "mu_alpha": _check_location_prior(mu_alpha_prior, "mu_alpha_prior"),
        "sigma_alpha": _check_sd_prior(sigma_alpha_prior, "sigma_alpha_prior"),
        "mu_beta": _check_location_prior(mu_beta_prior, "mu_beta_prior"),
        "sigma_beta": _check_sd_prior(sigma_beta_prior, "sigma_beta_prior"),
    }
    group_dim = _check_dim_name(group_dim, "group_dim", taken=(_ROW_DIM,))
    if len(labels) < 2:
        raise ValueError(
            f"group has a single group ({labels[0]!r}); the varying-slopes model needs at least 2 "
            "groups (for one group, fit a plain logistic regression)"
        )
    centered = parameterization == "centered"
    coords = {group_dim: labels.tolist(), _ROW_DIM: np.arange(len(arm)).tolist()}
    with pm.Model(coords=coords) as model:
        mu_alpha = _location_variable("mu_alpha", priors["mu_alpha"])
        sigma_alpha = _sd_variable("sigma_alpha", priors["sigma_alpha"])
        mu_beta = _location_variable("mu_beta", priors["mu_beta"])
        sigma_beta = _sd_variable("sigma_beta", priors["sigma_beta"])
        if centered:
            alpha = pm.Normal("alpha", mu_alpha, sigma_alpha, dims=group_dim)
            beta = pm.Normal("beta", mu_beta, sigma_beta, dims=group_dim)
        else:
            alpha_offset = pm.Normal("alpha_offset", 0.0, 1.0, dims=group_dim)
            beta_offset = pm.Normal("beta_offset", 0.0, 1.0, dims=group_dim)
            alpha = pm.Deterministic("alpha", mu_alpha + sigma_alpha * alpha_offset, dims=group_dim)
            beta = pm.Deterministic("beta", mu_beta + sigma_beta * beta_offset, dims=group_dim)
        p_control = pm.Deterministic("p_control", pm.math.invlogit(alpha), dims=group_dim)
        p_treated = pm.Deterministic("p_treated", pm.math.invlogit(alpha + beta), dims=group_dim)
        pm.Deterministic("lift", p_treated - p_control, dims=group_dim)
        logit_p = alpha[codes] + beta[codes] * arm
        if kind == "counts":
            pm.Binomial("successes", n=n, logit_p=logit_p, observed=y, dims=_ROW_DIM)
        else:
            pm.Bernoulli("outcome", logit_p=logit_p, observed=y, dims=_ROW_DIM)
    _SPECS[model] = _LogisticSpec(
        kind=kind, groups=labels, parameterization=parameterization, group_dim=group_dim
    )
    return model


def _location_variable(name: str, prior: LocationPrior):
    if prior[0] == "student_t":
        _, nu, mu, sigma = prior
        return pm.StudentT(name, nu=nu, mu=mu, sigma=sigma)
    _, mu, sigma = prior
    return pm.Normal(name, mu=mu, sigma=sigma)


def _check_location_prior(prior: Any, name: str) -> LocationPrior:
    usage = "('student_t', nu, mu, sigma) or ('normal', mu, sigma)"
    if isinstance(prior, str) or not isinstance(prior, Sequence) or not prior:
        raise ValueError(f"{name} must be a tuple {usage}; got {prior!r}")
    family = prior[0]
    if family == "student_t" and len(prior) == 4:
        return (
            "student_t",
            _check_positive(prior[1], f"{name} nu"),
            _check_finite(prior[2], f"{name} mu"),
            _check_positive(prior[3], f"{name} sigma"),
        )
    if family == "normal" and len(prior) == 3:
        return ("normal", _check_finite(prior[1], f"{name} mu"), _check_positive(prior[2], f"{name} sigma"))
    raise ValueError(f"{name} must be a tuple {usage}; got {prior!r}")


def _as_binary(x: ArrayLike, name: str) -> np.ndarray:
    """0/1 values (bools allowed) as an int64 array, or a ``ValueError`` naming ``name``."""
    arr = as_finite_1d(x, name)
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be 0 or 1; got {arr[i]:g} at position {i}")
    return arr.astype(np.int64)


def _check_arms(codes: np.ndarray, labels: pd.Index, arm: np.ndarray, trials: np.ndarray) -> None:
    """Every group needs data (positive trials) in both arms."""
    for value, arm_name in ((0, "control (treated == 0)"), (1, "treated (treated == 1)")):
        has = np.zeros(len(labels), dtype=bool)
        has[codes[(arm == value) & (trials > 0)]] = True
        if not has.all():
            missing = labels[int(np.flatnonzero(~has)[0])]
            raise ValueError(
                f"group {missing!r} has no data in the {arm_name} arm; every group needs both "
                "arms (check group and treated)"
            )


# --------------------------------------------------------------------------------------------
# fitting


def fit(
    model: pm.Model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int = 2,
    target_accept: float = 0.95,
    random_seed: int = DEFAULT_SEED,
    nuts_sampler: NutsSampler = DEFAULT_NUTS_SAMPLER,
    keep_theta: bool = True,
    keep_log_likelihood: bool = True,
    **sample_kwargs: Any,
) -> xr.DataTree:
    """Sample a model built by an :mod:`hbm_lib.models` builder with NUTS and post-process it.

    PyMC's progress bar and its INFO messages are silenced for the call; its warnings (e.g.
    about divergences or R-hat) still come through. With the same ``random_seed``, sampler and
    settings, two calls return identical numbers. What happens after sampling depends on the
    builder.

    :func:`hierarchical_normal`. For the ``"marginal"`` parameterization, NUTS samples only the
    standard deviations; for each posterior draw of them, ``mu``, then ``mu_group``, then ``theta``
    are drawn exactly from their normal conditional posteriors (``mu | sigmas, y``, ``mu_group |
    mu, sigmas, y``, ``theta | mu_group, sigma_unit, y``) with a NumPy generator seeded from
    ``random_seed``, and added to ``idata["posterior"]`` under the same names, dims and coords as
    the other parameterizations.

    The ``log_likelihood`` group holds, for every parameterization, the variable ``y`` with dims
    ``(chain, draw, unit_dim)``: ``log N(y[i] | mu_group[g[i]], sqrt(se[i]^2 + sigma_unit^2))``
    (``mu`` in place of ``mu_group`` for two levels), the density of a unit's estimate *with its
    own theta integrated out*. It is not PyMC's default ``log N(y[i] | theta[i], se[i])``: being
    a function of the shared parameters only, it is the same quantity in every parameterization
    (so LOO comparisons between them are consistent), and it is the density of a new unit's
    estimate, which PSIS-LOO approximates far more reliably than the theta-conditional one (whose
    leave-one-out posterior of ``theta[i]`` moves too far for importance sampling).

    :func:`beta_binomial`. In the ``"marginal"`` form NUTS samples ``phi`` and ``log_kappa``, and
    each ``rate`` is then drawn exactly from ``Beta(a + successes, b + trials - successes)`` per
    posterior draw (seeded from ``random_seed``) and added with dims ``variant_dim``. With ``a``
    and ``b`` fixed there is nothing left for NUTS: every rate is drawn exactly, ``chains x
    draws`` independent draws, and there is no ``sample_stats`` group (``tune``, ``cores`` and
    ``target_accept`` are unused). The ``log_likelihood`` group holds ``successes`` (dims
    ``variant_dim``): the beta-binomial log pmf of each variant's count given ``(a, b)``, with its
    rate integrated out, in both parameterizations (the same reasoning as above).

    :func:`varying_slopes_logistic` and :func:`varying_slopes_logistic_from_rows`. Plain NUTS; the
    ``log_likelihood`` group is PyMC's pointwise one (``successes`` per row of counts, or
    ``outcome`` per user).

    Parameters
    ----------
    model : pymc.Model
        A model returned by :func:`hierarchical_normal`, :func:`beta_binomial`,
        :func:`varying_slopes_logistic` or :func:`varying_slopes_logistic_from_rows`.
    draws, tune : int
        Draws kept and tuning steps, per chain.
    chains, cores : int
        Number of chains, and how many run in parallel.
    target_accept : float, default 0.95
        NUTS target acceptance rate in ``(0, 1)``; raise it (e.g. to 0.99) for the centered form.
        Hierarchical posteriors have regions of high curvature (the neck of a funnel; with a
        half-normal prior, a density of ``log sigma`` that falls off like ``exp(-e^(2 log sigma))``
        on the right) where the step size NUTS adapts at PyMC's usual 0.8, or even 0.9, overshoots
        and produces the occasional divergence; 0.95 costs a little speed and removes them in the
        book's models.
    random_seed : int
        Seed of the chains and of the exact conditional draws; a fixed default.
    nuts_sampler : {"nutpie", "pymc"}, default "nutpie"
        Which NUTS implementation runs the chains: nutpie's (chains on threads of this process) or
        PyMC's own (one forked process per chain). Always passed to :func:`pymc.sample`
        explicitly, so the choice never depends on what happens to be installed. Both give the
        same posterior, but not the same draws. The default (``DEFAULT_NUTS_SAMPLER``) was chosen
        by measurement, in ``benchmarks/samplers.py`` (its table is in the README): over the
        book's five kinds of NUTS fit nutpie took about half PyMC's wall time, cold and warm, and
        a third of it on the logistic models; PyMC's NUTS was about a second faster per refit of
        the small marginal models, because nutpie recompiles on every call.
    keep_theta : bool, default True
        :func:`hierarchical_normal` models only: store ``theta`` in the posterior. ``False`` skips
        drawing it in the marginal form (and drops it, with ``theta_offset``, in the others),
        which saves memory with very many units.
    keep_log_likelihood : bool, default True
        Add the ``log_likelihood`` group (``draws * chains * n`` values).
    **sample_kwargs
        Passed on to :func:`pymc.sample` (e.g. ``init``, ``progressbar``).

    Returns
    -------
    xarray.DataTree
        With groups ``posterior``, ``sample_stats`` (unless nothing was sampled),
        ``observed_data`` and, unless turned off, ``log_likelihood``; a group is read as
        ``idata["posterior"]`` and a variable as ``idata["posterior"]["mu"]``.

    Raises
    ------
    ValueError
        If ``model`` was not built by an :mod:`hbm_lib.models` builder, or a setting is invalid.

    Examples
    --------
    >>> from hbm_lib.datasets import eight_schools
    >>> d = eight_schools()
    >>> model = hierarchical_normal(d["y"], d["sigma"], units=d["school"])
    >>> idata = fit(model, draws=500)  # doctest: +SKIP
    >>> check_convergence(idata)["ok"].all()  # doctest: +SKIP
    True
    >>> import arviz as az
    >>> az.loo(idata)  # doctest: +SKIP

    With ``a`` and ``b`` fixed, the beta-binomial rates are conjugate and drawn exactly:

    >>> conjugate = beta_binomial([3, 7], [10, 10], a=1.0, b=1.0)
    >>> idata = fit(conjugate, draws=500)
    >>> idata["posterior"]["rate"].shape
    (4, 500, 2)
    >>> round(float(idata["posterior"]["rate"].sel(variant=1).mean()), 1)  # Beta(8, 4): mean 0.667
    0.7
    """
    spec = _SPECS.get(model) if isinstance(model, pm.Model) else None
    if spec is None:
        raise ValueError(
            "model must be a model built by hbm_lib.models.hierarchical_normal, beta_binomial, "
            "varying_slopes_logistic or varying_slopes_logistic_from_rows"
        )
    draws = _check_int(draws, "draws", minimum=1)
    tune = _check_int(tune, "tune", minimum=0)
    chains = _check_int(chains, "chains", minimum=1)
    cores = _check_int(cores, "cores", minimum=1)
    target_accept = _check_open_unit(target_accept, "target_accept")
    random_seed = _check_int(random_seed, "random_seed", minimum=0)
    if nuts_sampler not in _NUTS_SAMPLERS:
        raise ValueError(f"nuts_sampler must be one of {_NUTS_SAMPLERS}; got {nuts_sampler!r}")
    if sample_kwargs.get("return_inferencedata", True) is not True:
        raise ValueError("return_inferencedata must be True: fit returns an xarray.DataTree")
    if "idata_kwargs" in sample_kwargs:
        raise ValueError(
            "idata_kwargs is not an option of fit: it adds its own log_likelihood group (see "
            "keep_log_likelihood) and nutpie ignores idata_kwargs"
        )
    if not isinstance(spec, _Spec) and not keep_theta:
        raise ValueError("keep_theta applies only to hierarchical_normal models; leave it at True")
    options = {"progressbar": False, **sample_kwargs}
    settings = dict(
        draws=draws, tune=tune, chains=chains, cores=cores, target_accept=target_accept,
        random_seed=random_seed, nuts_sampler=nuts_sampler,
    )

    if isinstance(spec, _BetaBinomialSpec):
        return _fit_beta_binomial(model, spec, settings, options, keep_log_likelihood)
    if isinstance(spec, _LogisticSpec):
        idata = _sample(model, settings, options)
        if keep_log_likelihood:
            with _pymc_info_silenced():
                pm.compute_log_likelihood(idata, model=model, progressbar=False)
        return idata
    return _fit_normal(model, spec, settings, options, keep_theta, keep_log_likelihood)


def _sample(model: pm.Model, settings: dict[str, Any], options: dict[str, Any]) -> xr.DataTree:
    with _pymc_info_silenced():
        idata = pm.sample(model=model, **settings, **options)
    # nutpie labels coordinates with object arrays, PyMC with NumPy's own dtype (e.g. <U1): use
    # the latter in every group, so that a fit's layout does not depend on the sampler
    for name, node in idata.children.items():
        dims = [dim for dim in node.dims if dim in model.coords]
        if dims:
            idata[name] = node.to_dataset().assign_coords({dim: _coord(model, dim) for dim in dims})
    return idata


def _fit_normal(
    model: pm.Model,
    spec: _Spec,
    settings: dict[str, Any],
    options: dict[str, Any],
    keep_theta: bool,
    keep_log_likelihood: bool,
) -> xr.DataTree:
    idata = _sample(model, settings, options)
    random_seed = settings["random_seed"]

    posterior = idata["posterior"]
    sigma_unit = posterior["sigma_unit"].to_numpy()
    shape = sigma_unit.shape  # (chain, draw)
    sample_dims = ("chain", "draw")

    if spec.parameterization == "marginal":
        rng = np.random.default_rng([random_seed, _CONDITIONAL_STREAM])
        sigma_group = posterior["sigma_group"].to_numpy().ravel() if spec.three_level else None
        drawn = _draw_conditionals(
            spec.y,
            spec.se,
            spec.codes,
            sigma_unit.ravel(),
            sigma_group,
            spec.mu_prior_mean,
            spec.mu_prior_sd,
            rng,
            draw_theta=keep_theta,
        )
        posterior["mu"] = xr.DataArray(drawn["mu"].reshape(shape), dims=sample_dims)
        if spec.three_level:
            posterior["mu_group"] = xr.DataArray(
                drawn["mu_group"].reshape(*shape, -1),
                dims=(*sample_dims, spec.group_dim),
                coords={spec.group_dim: _coord(model, spec.group_dim)},
            )
        if keep_theta:
            posterior["theta"] = xr.DataArray(
                drawn["theta"].reshape(*shape, -1),
                dims=(*sample_dims, spec.unit_dim),
                coords={spec.unit_dim: _coord(model, spec.unit_dim)},
            )
    elif not keep_theta:
        kept = posterior.to_dataset().drop_vars(["theta", "theta_offset", spec.unit_dim], errors="ignore")
        idata["posterior"] = kept
        posterior = idata["posterior"]

    if keep_log_likelihood:
        loc = posterior["mu_group"] if spec.three_level else posterior["mu"]
        loc = loc.to_numpy().reshape(-1, len(spec.groups) if spec.three_level else 1)
        loglik = _predictive_loglik(spec.y, spec.se, spec.codes, loc, sigma_unit.ravel())
        idata["log_likelihood"] = xr.Dataset(
            {"y": (("chain", "draw", spec.unit_dim), loglik.reshape(*shape, -1))},
            coords={
                "chain": posterior["chain"].to_numpy(),
                "draw": posterior["draw"].to_numpy(),
                spec.unit_dim: _coord(model, spec.unit_dim),
            },
        )
    _add_observed(idata, "y", spec.y, spec.unit_dim, _coord(model, spec.unit_dim))
    return idata


def _fit_beta_binomial(
    model: pm.Model,
    spec: _BetaBinomialSpec,
    settings: dict[str, Any],
    options: dict[str, Any],
    keep_log_likelihood: bool,
) -> xr.DataTree:
    dim = spec.variant_dim
    labels = _coord(model, dim)
    rng = np.random.default_rng([settings["random_seed"], _CONDITIONAL_STREAM])
    if spec.parameterization == "marginal" and spec.fixed is not None:
        # nothing for NUTS: the posterior is Beta(a + y, b + n - y), drawn exactly
        chains, draws = settings["chains"], settings["draws"]
        a0, b0 = spec.fixed
        constant = np.ones((chains, draws))
        size = chains * draws
        rate = _draw_rates(spec.successes, spec.trials, np.full(size, a0), np.full(size, b0), rng)
        sample = ("chain", "draw")
        posterior = xr.Dataset(
            {
                "phi": (sample, constant * (a0 / (a0 + b0))),
                "log_kappa": (sample, constant * math.log(a0 + b0)),
                "kappa": (sample, constant * (a0 + b0)),
                "a": (sample, constant * a0),
                "b": (sample, constant * b0),
                "rate": ((*sample, dim), rate.reshape(chains, draws, -1)),
            },
            coords={"chain": np.arange(chains), "draw": np.arange(draws), dim: labels},
            attrs={"inference_library": "hbm_lib.models.fit (exact conjugate draws)"},
        )
        idata = xr.DataTree.from_dict({"posterior": posterior})
    else:
        idata = _sample(model, settings, options)
        posterior = idata["posterior"]
        if spec.parameterization == "marginal":
            a = posterior["a"].to_numpy()
            rate = _draw_rates(spec.successes, spec.trials, a.ravel(), posterior["b"].to_numpy().ravel(), rng)
            posterior["rate"] = xr.DataArray(
                rate.reshape(*a.shape, -1), dims=("chain", "draw", dim), coords={dim: labels}
            )

    posterior = idata["posterior"]
    if keep_log_likelihood:
        a = posterior["a"].to_numpy()[..., None]
        b = posterior["b"].to_numpy()[..., None]
        loglik = _betabinom_logpmf(spec.successes, spec.trials, a, b)
        idata["log_likelihood"] = xr.Dataset(
            {"successes": (("chain", "draw", dim), loglik)},
            coords={
                "chain": posterior["chain"].to_numpy(),
                "draw": posterior["draw"].to_numpy(),
                dim: labels,
            },
        )
    _add_observed(idata, "successes", spec.successes, dim, labels)
    return idata


def _add_observed(idata: xr.DataTree, name: str, values: np.ndarray, dim: str, labels: np.ndarray) -> None:
    """Put the data into ``observed_data`` unless PyMC did (it leaves the group empty when the
    likelihood is a ``pm.Potential``, as in the marginal normal model)."""
    if "observed_data" in idata.children and name in idata["observed_data"].data_vars:
        return
    observed = xr.Dataset({name: ((dim,), values.copy())}, coords={dim: labels})
    if "observed_data" in idata.children:
        observed = idata["observed_data"].to_dataset().merge(observed)
    idata["observed_data"] = observed


def _coord(model: pm.Model, dim: str) -> np.ndarray:
    """Coordinate values as PyMC stores them in its own output (e.g. ``<U1``, not object)."""
    return np.asarray(model.coords[dim])


@contextlib.contextmanager
def _pymc_info_silenced() -> Iterator[None]:
    """Raise the ``pymc`` logger to WARNING for the duration (never lower a stricter level)."""
    logger = logging.getLogger("pymc")
    previous = logger.level
    logger.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(previous)


def _group_sums_2d(values: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Row-wise sums within groups; ``order`` sorts the columns by group, ``starts`` marks each."""
    return np.add.reduceat(values[:, order], starts, axis=1)


def _draw_conditionals(
    y: np.ndarray,
    se: np.ndarray,
    codes: np.ndarray | None,
    sigma_unit: ArrayLike,
    sigma_group: ArrayLike | None,
    mu_prior_mean: float,
    mu_prior_sd: float,
    rng: np.random.Generator,
    size: int | None = None,
    *,
    draw_theta: bool = True,
) -> dict[str, np.ndarray | None]:
    """Exact draws of ``mu``, ``mu_group`` and ``theta`` given the standard deviations and ``y``.

    One joint draw per value of ``sigma_unit`` (and ``sigma_group``), in the order
    ``mu | sigmas, y``, then ``mu_group | mu, sigmas, y``, then ``theta | mu_group, sigma_unit, y``.
    With scalar sigmas, ``size`` gives the number of draws. ``codes`` and ``sigma_group`` are
    ``None`` for the two-level model.

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
    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    n = len(y)
    sigma_unit = np.atleast_1d(np.asarray(sigma_unit, dtype=float))
    if size is not None:
        sigma_unit = np.broadcast_to(sigma_unit, (size,))
    n_draws = len(sigma_unit)
    three_level = sigma_group is not None
    if three_level:
        sigma_group = np.broadcast_to(np.asarray(sigma_group, dtype=float), (n_draws,))
        codes = np.asarray(codes)
        n_groups = int(codes.max()) + 1
    else:
        codes = np.zeros(n, dtype=np.int64)
        n_groups = 1
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    s0_sq = float(mu_prior_sd) ** 2
    se_sq = se**2
    rng_mu, rng_group, rng_theta = rng.spawn(3)

    mu = np.empty(n_draws)
    mu_group = np.empty((n_draws, n_groups)) if three_level else None
    theta = np.empty((n_draws, n)) if draw_theta else None
    block = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_draws, block):
        rows = slice(start, min(n_draws, start + block))
        m = rows.stop - rows.start
        su_sq = sigma_unit[rows, None] ** 2
        v = se_sq + su_sq
        precision = 1.0 / v
        p_g = _group_sums_2d(precision, order, starts)
        ybar_g = _group_sums_2d(precision * y, order, starts) / p_g
        if three_level:
            sg_sq = sigma_group[rows, None] ** 2
            var_g = 1.0 / p_g + sg_sq
        else:
            var_g = 1.0 / p_g
        w = np.sum(1.0 / var_g, axis=1)
        ybar = np.sum(ybar_g / var_g, axis=1) / w

        b = s0_sq / (s0_sq + 1.0 / w)
        mu_rows = mu_prior_mean + b * (ybar - mu_prior_mean) + np.sqrt(b / w) * rng_mu.standard_normal(m)
        mu[rows] = mu_rows
        if three_level:
            b_g = sg_sq / var_g
            mg = mu_rows[:, None] + b_g * (ybar_g - mu_rows[:, None])
            mg += np.sqrt(b_g / p_g) * rng_group.standard_normal((m, n_groups))
            mu_group[rows] = mg
            loc = mg[:, codes]
        else:
            loc = mu_rows[:, None]
        if draw_theta:
            w_i = su_sq / v
            theta[rows] = loc + w_i * (y - loc) + np.sqrt(w_i * se_sq) * rng_theta.standard_normal((m, n))
    return {"mu": mu, "mu_group": mu_group, "theta": theta}


def _predictive_loglik(
    y: np.ndarray, se: np.ndarray, codes: np.ndarray | None, loc: np.ndarray, sigma_unit: np.ndarray
) -> np.ndarray:
    """``log N(y[i] | loc[s, g[i]], se[i]^2 + sigma_unit[s]^2)`` for each draw ``s``: (draws, n)."""
    n = len(y)
    codes = np.zeros(n, dtype=np.int64) if codes is None else codes
    out = np.empty((len(sigma_unit), n))
    block = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, len(sigma_unit), block):
        rows = slice(start, min(len(sigma_unit), start + block))
        v = se**2 + sigma_unit[rows, None] ** 2
        out[rows] = -0.5 * (_LOG_2PI + np.log(v) + (y - loc[rows][:, codes]) ** 2 / v)
    return out


# --------------------------------------------------------------------------------------------
# diagnostics


def check_convergence(
    idata: xr.DataTree,
    *,
    var_names: str | Sequence[str] | None = None,
    rhat_max: float = 1.01,
    ess_min: float = 400,
    warn: bool = True,
) -> pd.DataFrame:
    """R-hat, effective sample sizes and divergences of a fit, with warnings for what fails.

    Uses :func:`arviz.rhat` (rank-normalized split R-hat) and :func:`arviz.ess` (bulk and tail).
    A variable passes when its largest R-hat is at most ``rhat_max``, its smallest bulk and tail
    ESS are at least ``ess_min``, and the fit had no divergent transitions (divergences are
    counted over the whole fit, so they fail every row: a divergent fit may be biased anywhere).

    Parameters
    ----------
    idata : xarray.DataTree
        A fit, e.g. from :func:`fit`, with a ``posterior`` group (``sample_stats.diverging`` is
        used when present).
    var_names : str or sequence of str, optional
        Posterior variables to check (default: all except the ``*_offset`` ones).
    rhat_max : float, default 1.01
        Largest acceptable R-hat, ``>= 1``.
    ess_min : float, default 400
        Smallest acceptable bulk and tail ESS (summed over chains), ``>= 0``.
    warn : bool, default True
        Issue a ``UserWarning`` per failing variable, naming it and the failing number(s), and
        one naming the number of divergences if there were any.

    Returns
    -------
    pandas.DataFrame
        Indexed by variable, with ``r_hat`` (largest over the variable's elements), ``ess_bulk``
        and ``ess_tail`` (smallest over its elements), ``divergences`` (total divergent
        transitions of the fit, the same in every row) and ``ok`` (bool).

    Examples
    --------
    >>> import numpy as np, arviz as az
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict({"posterior": {"mu": rng.normal(size=(4, 1000))}})
    >>> table = check_convergence(idata)
    >>> table.columns.tolist()
    ['r_hat', 'ess_bulk', 'ess_tail', 'divergences', 'ok']
    >>> bool(table.loc["mu", "ok"])
    True
    """
    posterior = group_dataset(idata, "idata")
    if var_names is None:
        names = [str(v) for v in posterior.data_vars if not str(v).endswith("_offset")]
    else:
        names = [var_names] if isinstance(var_names, str) else list(var_names)
        missing = [v for v in names if v not in posterior.data_vars]
        if missing:
            raise ValueError(
                f"var_names: {missing} not in the posterior; it has {list(map(str, posterior.data_vars))}"
            )
    if not names:
        raise ValueError("var_names: no variables to check")
    rhat_max = _check_finite(rhat_max, "rhat_max")
    if rhat_max < 1.0:
        raise ValueError(f"rhat_max must be >= 1 (R-hat is 1 at convergence); got {rhat_max}")
    ess_min = _check_finite(ess_min, "ess_min")
    if ess_min < 0:
        raise ValueError(f"ess_min must be >= 0; got {ess_min}")

    subset = posterior[names]
    rhat = az.rhat(subset)
    ess_bulk = az.ess(subset, method="bulk")
    ess_tail = az.ess(subset, method="tail")
    stats = idata["sample_stats"] if isinstance(idata, xr.DataTree) and "sample_stats" in idata.children else None
    divergences = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else 0

    rows = []
    for name in names:
        r = float(np.max(rhat[name].to_numpy()))
        bulk = float(np.min(ess_bulk[name].to_numpy()))
        tail = float(np.min(ess_tail[name].to_numpy()))
        problems = []
        if not r <= rhat_max:  # also catches NaN
            problems.append(f"r_hat = {r:.3f} > {rhat_max:g}")
        if not bulk >= ess_min:
            problems.append(f"ess_bulk = {bulk:.0f} < {ess_min:g}")
        if not tail >= ess_min:
            problems.append(f"ess_tail = {tail:.0f} < {ess_min:g}")
        if problems and warn:
            warnings.warn(f"{name} has not converged: {'; '.join(problems)}", UserWarning, stacklevel=2)
        rows.append(
            {
                "variable": name,
                "r_hat": r,
                "ess_bulk": bulk,
                "ess_tail": tail,
                "divergences": divergences,
                "ok": not problems and divergences == 0,
            }
        )
    if divergences and warn:
        warnings.warn(
            f"{divergences} divergent transitions after tuning: the posterior may be biased; raise "
            "target_accept or use parameterization='non_centered' or 'marginal'",
            UserWarning,
            stacklevel=2,
        )
    return pd.DataFrame(rows).set_index("variable")


# --------------------------------------------------------------------------------------------
# argument checks


def _check_parameterization(parameterization: Any) -> str:
    if parameterization not in _PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {_PARAMETERIZATIONS}; got {parameterization!r}")
    return parameterization


def _check_finite(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number; got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {number}")
    return number


def _check_positive(value: Any, name: str) -> float:
    number = _check_finite(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be positive; got {number:g}")
    return number


def _check_open_unit(value: Any, name: str) -> float:
    number = _check_finite(value, name)
    if not 0.0 < number < 1.0:
        raise ValueError(f"{name} must be in (0, 1); got {number:g}")
    return number


def _check_int(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def _check_sd_prior(prior: Any, name: str) -> SdPrior:
    if isinstance(prior, str) or not isinstance(prior, Sequence) or len(prior) != 2:
        raise ValueError(f"{name} must be a tuple (family, scale), e.g. ('half_normal', 5.0); got {prior!r}")
    family, scale = prior
    if family not in _SD_FAMILIES:
        raise ValueError(f"{name}: unknown family {family!r}; use one of {_SD_FAMILIES}")
    return family, _check_positive(scale, f"{name} scale")


def _check_dims(unit_dim: Any, group_dim: Any) -> tuple[str, str]:
    for name, dim in (("unit_dim", unit_dim), ("group_dim", group_dim)):
        if not isinstance(dim, str) or not dim:
            raise ValueError(f"{name} must be a non-empty string; got {dim!r}")
        if dim in ("chain", "draw"):
            raise ValueError(f"{name} must not be {dim!r}: that name is taken by the samples")
    if unit_dim == group_dim:
        raise ValueError(f"unit_dim and group_dim must differ; both are {unit_dim!r}")
    return unit_dim, group_dim

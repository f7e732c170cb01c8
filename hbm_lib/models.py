"""Full-Bayes normal hierarchical models on unit estimates with known standard errors.

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

from hbm_lib._validation import (
    as_finite_1d,
    as_labels,
    as_positive_1d,
    check_same_length,
    unit_labels,
)

__all__ = ["hierarchical_normal", "fit", "check_convergence"]

Parameterization = Literal["centered", "non_centered", "marginal"]
SdPrior = tuple[str, float]

_PARAMETERIZATIONS = ("centered", "non_centered", "marginal")
_SD_FAMILIES = ("half_normal", "half_cauchy", "uniform")
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


# keyed by the model object itself; an entry disappears with its model
_SPECS: weakref.WeakKeyDictionary[pm.Model, _Spec] = weakref.WeakKeyDictionary()


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
    # = -log1p(s0^2 W) / 2. (Written this way, PyTensor 2.38's fusion rewrite does not hit its
    # KeyError bug, pymc-devs/pytensor#2145, when logp and gradient are compiled together.)
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
# fitting


def fit(
    model: pm.Model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int = 2,
    target_accept: float = 0.9,
    random_seed: int = DEFAULT_SEED,
    keep_theta: bool = True,
    keep_log_likelihood: bool = True,
    **sample_kwargs: Any,
) -> az.InferenceData:
    """Sample a model built by :func:`hierarchical_normal` with NUTS and post-process it.

    PyMC's progress bar and its INFO messages are silenced for the call; its warnings (e.g.
    about divergences or R-hat) still come through. With the same ``random_seed`` and settings,
    two calls return identical numbers.

    For the ``"marginal"`` parameterization, NUTS samples only the standard deviations; for each
    posterior draw of them, ``mu``, then ``mu_group``, then ``theta`` are drawn exactly from their
    normal conditional posteriors (``mu | sigmas, y``, ``mu_group | mu, sigmas, y``, ``theta |
    mu_group, sigma_unit, y``) with a NumPy generator seeded from ``random_seed``, and added to
    ``idata.posterior`` under the same names, dims and coords as the other parameterizations.

    The ``log_likelihood`` group holds, for every parameterization, the variable ``y`` with dims
    ``(chain, draw, unit_dim)``: ``log N(y[i] | mu_group[g[i]], sqrt(se[i]^2 + sigma_unit^2))``
    (``mu`` in place of ``mu_group`` for two levels), the density of a unit's estimate *with its
    own theta integrated out*. It is not PyMC's default ``log N(y[i] | theta[i], se[i])``: being
    a function of the shared parameters only, it is the same quantity in every parameterization
    (so LOO comparisons between them are consistent), and it is the density of a new unit's
    estimate, which PSIS-LOO approximates far more reliably than the theta-conditional one (whose
    leave-one-out posterior of ``theta[i]`` moves too far for importance sampling).

    Parameters
    ----------
    model : pymc.Model
        A model returned by :func:`hierarchical_normal`.
    draws, tune : int
        Draws kept and tuning steps, per chain.
    chains, cores : int
        Number of chains, and how many run in parallel.
    target_accept : float, default 0.9
        NUTS target acceptance rate in ``(0, 1)``; raise it (e.g. to 0.99) for the centered form.
        In the marginal form with a half-normal prior, the density of ``log sigma`` falls off like
        ``exp(-e^(2 log sigma))`` on the right, and the large step NUTS adapts to the
        one-dimensional target can overshoot into that wall: a few divergences at 0.9 are then
        harmless, and ``target_accept=0.95`` removes them at little cost.
    random_seed : int
        Seed of the chains and of the exact conditional draws; a fixed default.
    keep_theta : bool, default True
        Store ``theta`` in the posterior. ``False`` skips drawing it in the marginal form (and drops
        it, with ``theta_offset``, in the others), which saves memory with very many units.
    keep_log_likelihood : bool, default True
        Add the ``log_likelihood`` group (``draws * chains * n`` values).
    **sample_kwargs
        Passed on to :func:`pymc.sample` (e.g. ``init``, ``nuts_sampler``, ``progressbar``).

    Returns
    -------
    arviz.InferenceData
        With groups ``posterior``, ``sample_stats``, ``observed_data`` (``y``) and, unless turned
        off, ``log_likelihood`` (``y``).

    Raises
    ------
    ValueError
        If ``model`` was not built by :func:`hierarchical_normal`, or a setting is invalid.

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
    """
    spec = _SPECS.get(model) if isinstance(model, pm.Model) else None
    if spec is None:
        raise ValueError("model must be a model built by hbm_lib.models.hierarchical_normal")
    draws = _check_int(draws, "draws", minimum=1)
    tune = _check_int(tune, "tune", minimum=0)
    chains = _check_int(chains, "chains", minimum=1)
    cores = _check_int(cores, "cores", minimum=1)
    target_accept = _check_open_unit(target_accept, "target_accept")
    random_seed = _check_int(random_seed, "random_seed", minimum=0)
    if sample_kwargs.get("return_inferencedata", True) is not True:
        raise ValueError("return_inferencedata must be True: fit returns an InferenceData")
    idata_kwargs = sample_kwargs.get("idata_kwargs") or {}
    if idata_kwargs.get("log_likelihood"):
        raise ValueError(
            "idata_kwargs: do not ask PyMC for log_likelihood; fit adds its own (see keep_log_likelihood)"
        )
    options = {"progressbar": False, **sample_kwargs}

    with _pymc_info_silenced():
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            target_accept=target_accept,
            random_seed=random_seed,
            model=model,
            **options,
        )

    posterior = idata.posterior
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
        posterior = posterior.drop_vars(["theta", "theta_offset", spec.unit_dim], errors="ignore")
        idata.posterior = posterior

    if keep_log_likelihood:
        loc = posterior["mu_group"] if spec.three_level else posterior["mu"]
        loc = loc.to_numpy().reshape(-1, len(spec.groups) if spec.three_level else 1)
        loglik = _predictive_loglik(spec.y, spec.se, spec.codes, loc, sigma_unit.ravel())
        idata.add_groups(
            log_likelihood=xr.Dataset(
                {"y": (("chain", "draw", spec.unit_dim), loglik.reshape(*shape, -1))},
                coords={
                    "chain": posterior["chain"].to_numpy(),
                    "draw": posterior["draw"].to_numpy(),
                    spec.unit_dim: _coord(model, spec.unit_dim),
                },
            )
        )
    if "observed_data" not in idata.groups():
        idata.add_groups(
            observed_data=xr.Dataset(
                {"y": ((spec.unit_dim,), spec.y.copy())},
                coords={spec.unit_dim: _coord(model, spec.unit_dim)},
            )
        )
    return idata


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
    idata: az.InferenceData,
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
    idata : arviz.InferenceData
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
    >>> idata = az.from_dict(posterior={"mu": rng.normal(size=(4, 1000))})
    >>> table = check_convergence(idata)
    >>> table.columns.tolist()
    ['r_hat', 'ess_bulk', 'ess_tail', 'divergences', 'ok']
    >>> bool(table.loc["mu", "ok"])
    True
    """
    posterior = getattr(idata, "posterior", None)
    if posterior is None:
        raise ValueError("idata has no posterior group")
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
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        divergences = int(stats["diverging"].sum())
    else:
        divergences = 0

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

"""The varying-intercept, varying-slope logistic model of an experiment run in several groups.

For each group ``g`` (a country, a market) the log-odds of success in the control arm is
``alpha[g]`` and the treatment effect on the log-odds scale is ``beta[g]``; both vary around
population means. :func:`varying_slopes_logistic` takes summary counts per group and arm,
:func:`varying_slopes_logistic_from_rows` one binary outcome per user; both give the same
posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from numpy.typing import ArrayLike

from hbm_lib import _sampling
from hbm_lib._validation import align, as_finite_1d, as_labels, check_choice, check_dim_name, check_same_length
from hbm_lib.models._priors import (
    LocationPrior,
    SdPrior,
    check_location_prior,
    check_sd_prior,
    location_variable,
    sd_variable,
)
from hbm_lib.models._registry import register
from hbm_lib.models.binomial import as_counts, check_successes_within_trials

__all__ = ["varying_slopes_logistic", "varying_slopes_logistic_from_rows"]

PARAMETERIZATIONS = ("non_centered", "centered")
ROW_DIM = "row"  # observation dimension of the logistic models


@dataclass(frozen=True)
class LogisticSpec:
    """What :func:`hbm_lib.fit` needs to know about a varying-slopes logistic model."""

    kind: str  # "counts" or "rows"
    groups: pd.Index
    parameterization: str
    group_dim: str
    family: str = "logistic"

    def fit_nuts(self, model, settings, options, *, keep_theta: bool, keep_log_likelihood: bool) -> xr.DataTree:
        """Plain NUTS; the pointwise log-likelihood is PyMC's (per row of counts, or per user)."""
        idata = _sampling.sample_nuts(model, settings, options)
        if keep_log_likelihood:
            with _sampling.quiet_sampler():
                pm.compute_log_likelihood(idata, model=model, progressbar=False)
        return idata


def varying_slopes_logistic(
    successes: ArrayLike,
    trials: ArrayLike,
    groups: ArrayLike,
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
    groups : array-like
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
        posterior (after :func:`hbm_lib.fit`) holds ``mu_alpha``, ``sigma_alpha``, ``mu_beta``,
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
    ...     groups=["Canada", "Canada", "China", "China"], treated=[0, 1, 0, 1],
    ... )
    >>> model.coords["group"]
    ('Canada', 'China')
    >>> [rv.name for rv in model.free_RVs]
    ['mu_alpha', 'sigma_alpha', 'mu_beta', 'sigma_beta', 'alpha_offset', 'beta_offset']
    """
    aligned = align(successes=successes, trials=trials, groups=groups, treated=treated)
    y = as_counts(aligned["successes"], "successes")
    n = as_counts(aligned["trials"], "trials")
    arm = _as_binary(aligned["treated"], "treated")
    count = check_same_length(successes=y, trials=n, treated=arm)
    check_successes_within_trials(y, n)
    codes, labels = as_labels(aligned["groups"], count, "groups")
    _check_arms(codes, labels, arm, n)
    return _varying_slopes_model(
        "counts", y, n, codes, labels, arm, parameterization, mu_alpha_prior, mu_beta_prior,
        sigma_alpha_prior, sigma_beta_prior, group_dim,
    )


def varying_slopes_logistic_from_rows(
    outcome: ArrayLike,
    groups: ArrayLike,
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
    groups : array-like
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
    ...     outcome=[1, 0, 0, 1, 1, 1, 0, 0], groups=list("AAAABBBB"), treated=[0, 0, 1, 1] * 2,
    ... )
    >>> model.coords["group"], len(model.coords["row"])
    (('A', 'B'), 8)
    """
    aligned = align(outcome=outcome, groups=groups, treated=treated)
    y = _as_binary(aligned["outcome"], "outcome")
    arm = _as_binary(aligned["treated"], "treated")
    count = check_same_length(outcome=y, treated=arm)
    codes, labels = as_labels(aligned["groups"], count, "groups")
    _check_arms(codes, labels, arm, np.ones(count, dtype=np.int64))
    return _varying_slopes_model(
        "rows", y, None, codes, labels, arm, parameterization, mu_alpha_prior, mu_beta_prior,
        sigma_alpha_prior, sigma_beta_prior, group_dim,
    )


def _varying_slopes_model(
    kind, y, n, codes, labels, arm, parameterization, mu_alpha_prior, mu_beta_prior,
    sigma_alpha_prior, sigma_beta_prior, group_dim,
) -> pm.Model:
    parameterization = check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    priors = {
        "mu_alpha": check_location_prior(mu_alpha_prior, "mu_alpha_prior"),
        "sigma_alpha": check_sd_prior(sigma_alpha_prior, "sigma_alpha_prior"),
        "mu_beta": check_location_prior(mu_beta_prior, "mu_beta_prior"),
        "sigma_beta": check_sd_prior(sigma_beta_prior, "sigma_beta_prior"),
    }
    group_dim = check_dim_name(group_dim, "group_dim", taken=(ROW_DIM,))
    if len(labels) < 2:
        raise ValueError(
            f"groups has a single group ({labels[0]!r}); the varying-slopes model needs at least 2 "
            "groups (for one group, fit a plain logistic regression)"
        )
    centered = parameterization == "centered"
    coords = {group_dim: labels.tolist(), ROW_DIM: np.arange(len(arm)).tolist()}
    with pm.Model(coords=coords) as model:
        mu_alpha = location_variable("mu_alpha", priors["mu_alpha"])
        sigma_alpha = sd_variable("sigma_alpha", priors["sigma_alpha"])
        mu_beta = location_variable("mu_beta", priors["mu_beta"])
        sigma_beta = sd_variable("sigma_beta", priors["sigma_beta"])
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
            pm.Binomial("successes", n=n, logit_p=logit_p, observed=y, dims=ROW_DIM)
        else:
            pm.Bernoulli("outcome", logit_p=logit_p, observed=y, dims=ROW_DIM)
    return register(model, LogisticSpec(kind=kind, groups=labels, parameterization=parameterization, group_dim=group_dim))


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
                f"groups: {missing!r} has no data in the {arm_name} arm; every group needs both "
                "arms (check groups and treated)"
            )


# --------------------------------------------------------------------------------------------
# fitting


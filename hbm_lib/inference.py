"""Fitting the models of :mod:`hbm_lib.models`, checking the fits, and summarising them.

* :func:`fit` samples any model built by the library with NUTS (and, in the marginal forms, draws
  the integrated-out parameters exactly), with one set of defaults that every multi-fit function
  of the library shares, strict options and an optional retry policy;
* :func:`check_convergence` reports R-hat, effective sample sizes and divergences where each is
  meaningful: R-hat for MCMC draws only, nothing for constants, and no false alarm on the
  library's own exact draws;
* :func:`posterior_summary` turns one posterior variable into the tidy table the rest of the
  library reads (``estimate``, ``sd``, ``lower``, ``upper`` per label), for
  :func:`hbm_lib.compare_methods` and friends;
* :func:`quiet_sampler` silences PyMC's logger around your own ``pm.sample`` calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from hbm_lib._sampling import quiet_sampler
from hbm_lib._validation import (
    DEFAULT_SEED,
    Seed,
    as_finite_1d,
    as_seed_int,
    check_bool,
    check_finite,
    check_choice,
    check_int,
    check_level,
    check_open_unit,
    group_dataset,
    reject_unknown,
)
from hbm_lib.models._registry import spec_of

__all__ = ["fit", "check_convergence", "posterior_summary", "weighted_mean", "quiet_sampler", "FIT_DEFAULTS"]

NutsSampler = Literal["pymc", "nutpie"]
Method = Literal["nuts", "grid"]
METHODS = ("nuts", "grid")
#: Values of theta's draws (and, separately, of the pointwise log-likelihood) that
#: ``fit(method="grid")`` keeps at most: 50 million, 400 MB each.
DRAW_BUDGET = 50_000_000
NUTS_SAMPLERS = ("pymc", "nutpie")
#: NUTS implementation :func:`fit` uses unless told otherwise (chosen in ``benchmarks/samplers.py``).
DEFAULT_NUTS_SAMPLER: NutsSampler = "nutpie"
#: The sampling settings of :func:`fit`, shared by every function that fits several models
#: (:func:`hbm_lib.compare_groupings` passes its ``fit_options`` on to :func:`fit`).
FIT_DEFAULTS: Mapping[str, Any] = {
    "draws": 1000,
    "tune": 1000,
    "chains": 4,
    "cores": 2,
    "target_accept": 0.95,
    "nuts_sampler": DEFAULT_NUTS_SAMPLER,
}
# what a retry may change, and what sampler_options may not (fit sets it)
_RETRY_OPTIONS = ("draws", "tune", "chains", "target_accept", "nuts_sampler")
_OWNED_BY_FIT = ("model", "draws", "tune", "chains", "cores", "target_accept", "random_seed", "nuts_sampler",
                 "return_inferencedata", "idata_kwargs", "compute_convergence_checks")


def fit(
    model,
    *,
    method: Method = "nuts",
    draws: int = FIT_DEFAULTS["draws"],
    tune: int = FIT_DEFAULTS["tune"],
    chains: int = FIT_DEFAULTS["chains"],
    cores: int = FIT_DEFAULTS["cores"],
    target_accept: float = FIT_DEFAULTS["target_accept"],
    seed: Seed = DEFAULT_SEED,
    nuts_sampler: NutsSampler = DEFAULT_NUTS_SAMPLER,
    keep_theta: bool = True,
    keep_log_likelihood: bool = True,
    retries: Sequence[Mapping[str, Any]] = (),
    sampler_options: Mapping[str, Any] | None = None,
    draw_budget: int = DRAW_BUDGET,
    **unknown: Any,
) -> xr.DataTree:
    """Fit a model built by :mod:`hbm_lib.models`: NUTS with exact post-processing, or the exact posterior.

    ``method="nuts"`` (the default) samples with NUTS; ``method="grid"`` computes the exact
    posterior without MCMC, for the two models whose posterior has only two unknowns once the rest
    is integrated out: :func:`~hbm_lib.hierarchical_normal` (the standard deviations, integrated by
    adaptive quadrature, ``hbm_lib.models._normal_grid``) and :func:`~hbm_lib.beta_binomial`
    (``logit(phi)`` and ``log_kappa`` on an adaptive 2-d grid; with ``a`` and ``b`` fixed, conjugate
    draws). The grid route returns ``chains x draws`` *independent* draws from the exact posterior
    in the layout of a NUTS fit (the same variables, coordinates and ``log_likelihood`` group, so
    every downstream function works unchanged; the posterior's attrs mark the draws as exact, which
    :func:`check_convergence` reads), and, for the normal model, an ``exact_moments`` group with the
    posterior means and sds of ``mu``, ``mu_group`` and ``theta`` (``theta_mean``, ``theta_sd``, ...)
    without Monte Carlo error, and a ``grid`` group with the quadrature itself: the posterior mass
    of every cell, on the cells' midpoints in ``log_sigma_unit`` (and ``log_sigma_group``). ``tune``, ``cores``, ``target_accept``, ``nuts_sampler``,
    ``retries`` and ``sampler_options`` do not apply to it.

    PyMC's progress bar and INFO messages are silenced for the call. With the same ``seed``,
    sampler and settings, two calls return identical numbers. What happens after sampling depends
    on the builder:

    * :func:`~hbm_lib.hierarchical_normal`. In the ``"marginal"`` parameterization NUTS samples
      only the standard deviations; for each posterior draw of them, ``mu``, then ``mu_group``,
      then ``theta`` are drawn exactly from their normal conditional posteriors (with a NumPy
      generator seeded from ``seed``) and added under the same names, dims and coords as in the
      other parameterizations. The ``log_likelihood`` group holds ``y`` (dims ``(chain, draw,
      unit_dim)``): ``log N(y[i] | mu_group[g[i]], se[i]^2 + sigma_unit^2)``, the density of a
      unit's estimate *with its own theta integrated out*. It is the same quantity in every
      parameterization (so LOO comparisons between them are consistent) and the density of a
      new unit's estimate, which PSIS-LOO approximates far more reliably than the
      theta-conditional one.
    * :func:`~hbm_lib.beta_binomial`. In the ``"marginal"`` form NUTS samples ``phi`` and
      ``log_kappa`` and each ``rate`` is drawn exactly from ``Beta(a + successes, b + trials -
      successes)``. With ``a`` and ``b`` fixed nothing is left for NUTS: ``chains x draws``
      independent exact draws, no ``sample_stats`` group. ``log_likelihood`` holds
      ``successes``: the beta-binomial log pmf of each unit's count, its rate integrated out.
    * :func:`~hbm_lib.varying_slopes_logistic` (and ``_from_rows``): plain NUTS; the
      ``log_likelihood`` group is PyMC's pointwise one (per row of counts, or per user).

    Parameters
    ----------
    model : pymc.Model
        A model returned by a builder of :mod:`hbm_lib.models`.
    method : {"nuts", "grid"}, default "nuts"
        NUTS, or the exact posterior (hierarchical normal and beta-binomial models only).
    draws, tune : int
        Draws kept and tuning steps, per chain.
    chains, cores : int
        Number of chains, and how many run in parallel.
    target_accept : float, default 0.95
        NUTS target acceptance rate in ``(0, 1)``; raise it (e.g. to 0.99) for the centered form.
        Hierarchical posteriors have regions of high curvature (the neck of a funnel; with a
        half-normal prior, a density of ``log sigma`` that falls off like ``exp(-e^(2 log
        sigma))``) where the step size adapted at PyMC's usual 0.8 overshoots and produces the
        occasional divergence; 0.95 costs a little speed and removes them in the book's models.
    seed : int or numpy.random.Generator
        Seed of the chains and of the exact draws; a fixed default. A ``Generator`` is advanced
        by one draw (the integer seed handed to PyMC).
    nuts_sampler : {"nutpie", "pymc"}, default "nutpie"
        Which NUTS implementation runs the chains: nutpie's (chains on threads of this process)
        or PyMC's own (one process per chain). Always passed to :func:`pymc.sample` explicitly, so
        the choice never depends on what happens to be installed. Both give the same posterior,
        not the same draws. The default was chosen by measurement in ``benchmarks/samplers.py``
        (its table is in the README): over the book's five kinds of NUTS fit nutpie took about
        half PyMC's wall time, and a third of it on the logistic models; PyMC's NUTS was about a
        second faster per refit of the small marginal models, because nutpie recompiles on every
        call.
    keep_theta : bool, default True
        :func:`~hbm_lib.hierarchical_normal` models only: store ``theta`` in the posterior.
        ``False`` skips drawing it in the marginal form (and drops it, with ``theta_offset``, in
        the others), which saves memory with very many units.
    keep_log_likelihood : bool, default True
        Add the ``log_likelihood`` group (``draws * chains * n`` values).
    retries : sequence of mappings, optional
        What to change if the fit does not pass :func:`check_convergence`: each mapping holds new
        values for some of ``draws``, ``tune``, ``chains``, ``target_accept`` and
        ``nuts_sampler``, and is tried in turn, with the same seed, until a fit passes. The fit
        returned is the first that passes, or the last attempt (check it, it did not pass). Its
        posterior's attrs record ``fit_attempts``, the number of fits run.
    sampler_options : mapping, optional
        Further options of :func:`pymc.sample` (e.g. ``{"init": "adapt_diag"}``,
        ``{"progressbar": True}``); the settings above are not options here.
    draw_budget : int, default 50,000,000
        ``method="grid"`` only: the most values the draws of ``theta``, and separately the
        pointwise log-likelihood, may hold (``n x chains x draws``; 400 MB each at the default).
        Above it both are left out with a ``UserWarning``; ``theta``'s exact means and sds stay.

    Returns
    -------
    xarray.DataTree
        With groups ``posterior``, ``sample_stats`` (unless nothing was sampled),
        ``observed_data`` and, unless turned off, ``log_likelihood``; a group is read as
        ``idata["posterior"]`` and a variable as ``idata["posterior"]["mu"]``.

    Raises
    ------
    TypeError
        On an option ``fit`` does not know (``fit(model, draw=50)``), naming it and the closest
        known one.
    ValueError
        If ``model`` was not built by the library, or a setting is invalid.

    Examples
    --------
    >>> from hbm_lib import beta_binomial, eight_schools, hierarchical_normal
    >>> d = eight_schools()
    >>> model = hierarchical_normal(d["y"], d["sigma"], units=d["school"])
    >>> idata = fit(model, draws=500)  # doctest: +SKIP
    >>> check_convergence(idata)["ok"].all()  # doctest: +SKIP
    True

    With ``a`` and ``b`` fixed, the beta-binomial rates are conjugate and drawn exactly:

    >>> conjugate = beta_binomial([3, 7], [10, 10], a=1.0, b=1.0)
    >>> idata = fit(conjugate, draws=500)
    >>> idata["posterior"]["rate"].shape
    (4, 500, 2)
    >>> round(float(idata["posterior"]["rate"].sel(unit=1).mean()), 1)  # Beta(8, 4): mean 0.667
    0.7
    >>> fit(conjugate, draw=500)
    Traceback (most recent call last):
    ...
    TypeError: fit() got an unknown option 'draw'; did you mean 'draws'?
    """
    reject_unknown("fit()", unknown, [*FIT_DEFAULTS, "method", "seed", "keep_theta", "keep_log_likelihood", "retries", "sampler_options", "draw_budget"])
    spec = spec_of(model)
    method = check_choice(method, "method", METHODS)
    settings = _check_settings(draws, tune, chains, cores, target_accept, nuts_sampler)
    seed_int = as_seed_int(seed)
    keep_theta = check_bool(keep_theta, "keep_theta")
    keep_log_likelihood = check_bool(keep_log_likelihood, "keep_log_likelihood")
    if spec.family != "hierarchical_normal" and not keep_theta:
        raise ValueError("keep_theta applies only to hierarchical_normal models; leave it at True")
    if method == "grid":
        return _fit_grid(spec, model, settings, seed_int, keep_theta, keep_log_likelihood, retries, sampler_options, draw_budget)
    options = {"progressbar": False, **_check_sampler_options(sampler_options)}
    attempts = [settings, *_check_retries(retries, settings)]
    for k, attempt in enumerate(attempts, start=1):
        idata = spec.fit_nuts(
            model, {**attempt, "random_seed": seed_int}, options,
            keep_theta=keep_theta, keep_log_likelihood=keep_log_likelihood,
        )
        if k == len(attempts) or check_convergence(idata, warn=False)["ok"].all():
            idata["posterior"].attrs["fit_attempts"] = k
            return idata
    raise AssertionError("unreachable")  # pragma: no cover


def _fit_grid(spec, model, settings, seed_int, keep_theta, keep_log_likelihood, retries, sampler_options, draw_budget):
    if not hasattr(spec, "fit_grid"):
        raise ValueError(
            "method='grid' needs a model whose posterior reduces to two unknowns (hierarchical_normal or "
            f"beta_binomial); this is a {spec.family} model: use method='nuts'"
        )
    if retries or sampler_options:
        raise ValueError("retries and sampler_options are options of NUTS; method='grid' has no sampler to retry or configure")
    draw_budget = check_int(draw_budget, "draw_budget", minimum=0)
    return spec.fit_grid(
        model, {**settings, "random_seed": seed_int}, keep_theta=keep_theta,
        keep_log_likelihood=keep_log_likelihood, draw_budget=draw_budget,
    )


def _check_settings(draws, tune, chains, cores, target_accept, nuts_sampler) -> dict[str, Any]:
    return {
        "draws": check_int(draws, "draws", minimum=1),
        "tune": check_int(tune, "tune", minimum=0),
        "chains": check_int(chains, "chains", minimum=1),
        "cores": check_int(cores, "cores", minimum=1),
        "target_accept": check_open_unit(target_accept, "target_accept"),
        "nuts_sampler": check_choice(nuts_sampler, "nuts_sampler", NUTS_SAMPLERS),
    }


def _check_retries(retries: Any, settings: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(retries, Mapping) or isinstance(retries, (str, bytes)) or not isinstance(retries, Sequence):
        raise ValueError(f"retries must be a sequence of mappings, e.g. [{{'draws': 3000}}]; got {retries!r}")
    out = []
    for k, change in enumerate(retries):
        if not isinstance(change, Mapping):
            raise ValueError(f"retries[{k}] must be a mapping of settings; got {change!r}")
        reject_unknown(f"fit(retries[{k}])", change, _RETRY_OPTIONS)
        merged = {**settings, **change}
        out.append(_check_settings(**merged))
    return out


def _check_sampler_options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"sampler_options must be a mapping of pymc.sample options; got {options!r}")
    owned = [k for k in options if k in _OWNED_BY_FIT]
    if owned:
        raise ValueError(
            f"sampler_options: {owned[0]!r} is set by fit itself; pass it to fit directly"
            + (" (as seed)" if owned[0] == "random_seed" else "")
        )
    return dict(options)


# --------------------------------------------------------------------------------------------
# diagnostics


def check_convergence(
    idata: xr.DataTree | xr.Dataset,
    *,
    var_names: str | Sequence[str] | None = None,
    rhat_max: float = 1.01,
    ess_min: float = 400,
    warn: bool = True,
) -> pd.DataFrame:
    """R-hat, effective sample sizes and divergences of a fit, with warnings for what fails.

    What is checked depends on what the draws are (column ``checked``):

    * ``"mcmc"``: :func:`arviz.rhat` (rank-normalized split R-hat) at most ``rhat_max``, bulk and
      tail :func:`arviz.ess` at least ``ess_min``, and no divergent transitions (counted over the
      whole fit, so they fail every row: a divergent fit may be biased anywhere);
    * ``"independent draws"``: a posterior marked as exact draws (``hbm_lib_draws = "exact"`` in
      its attrs, as from ``fit(model, method="grid")`` or the conjugate route of
      :func:`fit`) has no chains to compare, so R-hat is not computed (NaN); independent draws
      are worth one effective draw each, so both ESS are the number of draws (not estimated), which
      must still reach ``ess_min``;
    * ``"constant"``: a variable that does not vary over the draws (a fixed ``a`` and ``b``) has
      no R-hat or ESS (NaN) and passes.

    Elements of a variable that are constant while others vary (rare) are left out of its R-hat
    and ESS.

    Parameters
    ----------
    idata : xarray.DataTree or xarray.Dataset
        A fit with a ``posterior`` group (``sample_stats.diverging`` is used when present), or
        the posterior itself.
    var_names : str or sequence of str, optional
        Variables to check (default: all of them except ``*_offset`` auxiliaries).
    rhat_max, ess_min : float
        Thresholds.
    warn : bool, default True
        Issue a ``UserWarning`` for each failing variable, and for divergences.

    Returns
    -------
    pandas.DataFrame
        One row per variable: ``r_hat`` (largest over its elements), ``ess_bulk``, ``ess_tail``
        (smallest), ``divergences`` (whole fit), ``checked`` and ``ok``.

    Examples
    --------
    >>> import numpy as np, arviz as az
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict({"posterior": {"mu": rng.normal(size=(4, 1000)), "a": np.ones((4, 1000))}})
    >>> table = check_convergence(idata)
    >>> table.columns.tolist()
    ['r_hat', 'ess_bulk', 'ess_tail', 'divergences', 'checked', 'ok']
    >>> table["checked"].tolist(), table["ok"].tolist()
    (['mcmc', 'constant'], [True, True])
    """
    posterior = group_dataset(idata, "idata")
    names = _variables(posterior, var_names)
    rhat_max = check_finite(rhat_max, "rhat_max")
    if rhat_max < 1.0:
        raise ValueError(f"rhat_max must be >= 1 (R-hat is 1 at convergence); got {rhat_max}")
    ess_min = check_finite(ess_min, "ess_min")
    if ess_min < 0:
        raise ValueError(f"ess_min must be >= 0; got {ess_min}")
    warn = check_bool(warn, "warn")
    exact = posterior.attrs.get("hbm_lib_draws") == "exact"
    has_stats = isinstance(idata, xr.DataTree) and "sample_stats" in idata.children
    stats = idata["sample_stats"] if has_stats else None
    divergences = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else 0
    rows = [_check_variable(posterior[name], exact, divergences, rhat_max, ess_min, warn) for name in names]
    if divergences and warn:
        warnings.warn(
            f"{divergences} divergent transitions after tuning: the posterior may be biased; raise "
            "target_accept or use parameterization='non_centered' or 'marginal'",
            UserWarning,
            stacklevel=2,
        )
    return pd.DataFrame(rows, index=pd.Index(names, name="variable"))


def _variables(posterior: xr.Dataset, var_names: Any) -> list[str]:
    if var_names is None:
        return [str(v) for v in posterior.data_vars if not str(v).endswith("_offset")]
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    missing = [v for v in names if v not in posterior.data_vars]
    if missing:
        raise ValueError(f"var_names: {missing} not in the posterior; it has {list(posterior.data_vars)}")
    if not names:
        raise ValueError("var_names: no variables to check")
    return names


def _check_variable(values: xr.DataArray, exact: bool, divergences: int, rhat_max, ess_min, warn) -> dict:
    name = str(values.name)
    draws = values.transpose("chain", "draw", ...).to_numpy().reshape(values.sizes["chain"], values.sizes["draw"], -1)
    varying = np.ptp(draws, axis=(0, 1)) > 0
    if not varying.any():
        return {"r_hat": np.nan, "ess_bulk": np.nan, "ess_tail": np.nan, "divergences": divergences, "checked": "constant", "ok": True}
    if exact:  # independent by construction: each draw is one effective draw
        bulk = tail = float(draws.shape[0] * draws.shape[1])
        r = np.nan
    else:
        kept = xr.Dataset({"x": (("chain", "draw", "element"), draws[..., varying])})
        bulk = float(az.ess(kept, method="bulk")["x"].min())
        tail = float(az.ess(kept, method="tail")["x"].min())
        r = float(az.rhat(kept)["x"].max())
    problems = []
    if not exact and not r <= rhat_max:  # also catches NaN
        problems.append(f"r_hat = {r:.3f} > {rhat_max:g}")
    if not bulk >= ess_min:
        problems.append(f"ess_bulk = {bulk:.0f} < {ess_min:g}")
    if not tail >= ess_min:
        problems.append(f"ess_tail = {tail:.0f} < {ess_min:g}")
    if problems and warn:
        warnings.warn(f"{name} has not converged: {'; '.join(problems)}", UserWarning, stacklevel=3)
    return {
        "r_hat": r, "ess_bulk": bulk, "ess_tail": tail, "divergences": divergences,
        "checked": "independent draws" if exact else "mcmc", "ok": not problems and divergences == 0,
    }


# --------------------------------------------------------------------------------------------
# summaries


def posterior_summary(idata: xr.DataTree | xr.Dataset, var: str = "theta", *, prob: float = 0.95) -> pd.DataFrame:
    """Posterior mean, sd and equal-tailed interval of one variable, one row per label.

    The tidy table the rest of the library reads: :func:`hbm_lib.score` and
    :func:`hbm_lib.compare_methods` take it next to the frames of :mod:`hbm_lib.pooling`.

    Parameters
    ----------
    idata : xarray.DataTree or xarray.Dataset
        A fit (its ``posterior`` group is used) or the posterior itself.
    var : str, default "theta"
        A posterior variable with at most one dimension besides ``chain`` and ``draw``.
    prob : float, default 0.95
        Probability inside the interval: from the ``(1 - prob) / 2`` to the ``(1 + prob) / 2``
        quantile of the draws (the book's convention; ArviZ's own default is 0.89).

    Returns
    -------
    pandas.DataFrame
        Indexed by the variable's labels (index named after its dimension; a scalar variable
        gives one row named after it), with columns ``estimate`` (posterior mean), ``sd``,
        ``lower`` and ``upper``. For a fit with an ``exact_moments`` group (``fit(model,
        method="grid")``), ``estimate`` and ``sd`` are the exact posterior mean and sd, without
        Monte Carlo error; the interval is always from the draws.

    Examples
    --------
    Draws at the quantiles of N(0, 1) and N(10, 2):

    >>> import numpy as np, arviz as az
    >>> from scipy import stats
    >>> z = stats.norm.ppf((np.arange(4000) + 0.5) / 4000).reshape(2, 2000)
    >>> draws = np.stack([z, 10 + 2 * z], axis=-1)
    >>> idata = az.from_dict({"posterior": {"theta": draws}}, coords={"school": ["A", "B"]}, dims={"theta": ["school"]})
    >>> posterior_summary(idata).round(1)
            estimate   sd  lower  upper
    school
    A            0.0  1.0   -2.0    2.0
    B           10.0  2.0    6.1   13.9
    """
    posterior = group_dataset(idata, "idata")
    if not isinstance(var, str) or var not in posterior.data_vars:
        raise ValueError(f"var: {var!r} is not a variable of the posterior; it has {list(posterior.data_vars)}")
    prob = check_level(prob, "prob")
    values = posterior[var]
    sample = [d for d in values.dims if d in ("chain", "draw", "sample")]
    others = [d for d in values.dims if d not in sample]
    if len(others) > 1:
        raise ValueError(f"var: {var!r} has dimensions {others}; posterior_summary takes at most one besides the draws")
    lo, hi = (values.quantile(q, dim=sample).drop_vars("quantile") for q in ((1 - prob) / 2, (1 + prob) / 2))
    mean, sd = values.mean(sample), values.std(sample, ddof=1)
    exact = idata["exact_moments"] if isinstance(idata, xr.DataTree) and "exact_moments" in idata.children else None
    if exact is not None and f"{var}_mean" in exact.data_vars:  # a grid fit: no Monte Carlo error
        mean, sd = exact[f"{var}_mean"].variable, exact[f"{var}_sd"].variable
    table = xr.Dataset({"estimate": mean, "sd": sd, "lower": lo, "upper": hi})
    if not others:
        return pd.DataFrame({k: [float(v)] for k, v in table.data_vars.items()}, index=pd.Index([var], name="variable"))
    frame = table.to_dataframe()[["estimate", "sd", "lower", "upper"]]
    frame.index = pd.Index(frame.index.tolist(), name=others[0])
    return frame


def weighted_mean(
    idata: xr.DataTree | xr.Dataset, weights: ArrayLike, var: str = "theta", *, prob: float = 0.95
) -> pd.DataFrame:
    """Posterior of a weighted average of one variable over its labels, ``sum_j w_j x_j / sum_j w_j``.

    Each posterior draw gives one value of the average, so its mean, sd and interval account for
    the joint uncertainty of the parts. The estimand of a hierarchical model's ``mu`` is the mean
    of the *population* the units are drawn from; a weighted mean of the units' own effects is a
    statement about *these* units, e.g. after stage 2 of a staggered-adoption analysis, the mean of
    the units' effects weighted by their numbers of treated observations is the pooled
    counterpart of the imputation estimator's ATT.

    Parameters
    ----------
    idata : xarray.DataTree or xarray.Dataset
        A fit, or its posterior.
    weights : array-like
        Non-negative weights, one per label of ``var`` (not all zero). A pandas Series is matched
        to the labels by its index; an array by position.
    var : str, default "theta"
        A posterior variable with one dimension besides the draws.
    prob : float, default 0.95
        Probability inside the equal-tailed interval.

    Returns
    -------
    pandas.DataFrame
        One row, with ``estimate``, ``sd``, ``lower`` and ``upper``.

    Examples
    --------
    >>> import numpy as np, arviz as az
    >>> draws = np.random.default_rng(1).normal([0.0, 10.0], 1.0, size=(2, 2000, 2))
    >>> idata = az.from_dict({"posterior": {"theta": draws}}, coords={"unit": ["A", "B"]}, dims={"theta": ["unit"]})
    >>> weighted_mean(idata, [3, 1])[["estimate"]].round(1)
                   estimate
    variable
    weighted mean       2.5
    """
    posterior = group_dataset(idata, "idata")
    if not isinstance(var, str) or var not in posterior.data_vars:
        raise ValueError(f"var: {var!r} is not a variable of the posterior; it has {list(posterior.data_vars)}")
    values = posterior[var]
    others = [d for d in values.dims if d not in ("chain", "draw", "sample")]
    if len(others) != 1:
        raise ValueError(f"var: {var!r} must have exactly one dimension besides the draws; it has {others}")
    labels = pd.Index(values[others[0]].to_numpy())
    if isinstance(weights, pd.Series):
        missing = labels[~labels.isin(weights.index)]
        extra = weights.index[~weights.index.isin(labels)]
        if len(missing) or len(extra) or weights.index.has_duplicates:
            detail = f"{missing[0]!r} has no weight" if len(missing) else (f"{extra[0]!r} is not a label of {var}" if len(extra) else "duplicate labels")
            raise ValueError(f"weights are labelled by other units than {var}: {detail}")
        weights = weights.reindex(labels)
    w = as_finite_1d(weights, "weights")
    if len(w) != len(labels):
        raise ValueError(f"weights must have one value per label of {var}: expected {len(labels)}, got {len(w)}")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative and not all zero")
    average = (values * xr.DataArray(w / w.sum(), dims=others)).sum(others[0]).rename("weighted mean")
    return posterior_summary(average.to_dataset(), "weighted mean", prob=prob)

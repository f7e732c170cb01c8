"""Simulation-based calibration: does a fitter recover the truth at the nominal rate, over the prior?

Simulation-based calibration (SBC; Talts et al. 2018) draws parameters from the prior and data from
the model, fits the model, and records the *rank* of each true value among ``L`` posterior draws.
If the fitter computes the posterior of the model the data came from, the truth and the draws are
exchangeable given the data, so each rank is uniform on ``0 .. L``: the posterior's intervals hold
the truth at their nominal rate, for every parameter, averaged over the prior. A wrong fitter
shows in the ranks: a U shape for posteriors too narrow, a hump for too wide, a slope for a bias.

:func:`simulation_based_calibration` runs it for a model of :mod:`hbm_lib.models` fitted with
:func:`hbm_lib.fit`, or for any model and fitter you supply, and tests each parameter's ranks with
a chi-square test and the simultaneous ECDF band of Säilynoja, Bürkner and Vehtari (2022);
:func:`plot_calibration` draws that ECDF. SBC checks the fitter against the model, not the model
against reality: a calibrated fitter of a wrong model passes.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from hbm_lib._validation import DEFAULT_SEED, Seed, as_generator, check_int, check_level, group_dataset, reject_unknown

__all__ = ["CalibrationResult", "simulation_based_calibration", "plot_calibration"]

#: Null simulations behind the simultaneous ECDF band (a fixed seed: the band is deterministic).
BAND_SIMULATIONS = 5000
_BAND_SEED = 2022
_SAMPLE_DIMS = ("chain", "draw")


@dataclass(frozen=True)
class CalibrationResult:
    """The result of :func:`simulation_based_calibration`.

    Attributes
    ----------
    ranks : pandas.DataFrame
        One row per replication (index ``replication``), one column per checked parameter
        (``"mu"``; vector parameters element by element, ``"theta[A]"``): the number of the
        ``ranked_draws`` thinned posterior draws below the true value, ``0 .. ranked_draws``.
    summary : pandas.DataFrame
        One row per checked parameter (index ``parameter``, in the order of ``ranks``):
        ``variable`` (its name without the element), ``n_sims``, ``bins``, ``chi_square`` and
        ``p_value`` (Pearson's chi-square test of uniformity of the ranks in ``bins`` bins of
        nearly equal width, each with its exact expected count), and ``in_band`` (whether the
        ECDF of the ranks stays inside the simultaneous ``band_prob`` band).
    fits : pandas.DataFrame
        One row per replication: ``seconds`` the fit took (the only column that differs between
        two runs with the same seed), ``draws`` (posterior draws before thinning),
        ``divergences``, ``ess_bulk_min`` and ``r_hat_max`` over the checked variables
        (:func:`hbm_lib.check_convergence`; exact draws have no R-hat).
    band : pandas.DataFrame
        The simultaneous band, one row per rank level ``i = 1 .. ranked_draws``: ``z = i /
        (ranked_draws + 1)`` and the ``lower`` and ``upper`` bounds of the ECDF there, the
        fraction of ranks below ``i``.
    ranked_draws : int
        ``L``, the number of posterior draws each truth was ranked among.
    band_prob : float
        The simultaneous coverage of the band under uniformity.
    """

    ranks: pd.DataFrame
    summary: pd.DataFrame
    fits: pd.DataFrame
    band: pd.DataFrame
    ranked_draws: int
    band_prob: float

    @classmethod
    def from_ranks(
        cls, ranks: pd.DataFrame, ranked_draws: int, *, band_prob: float = 0.95, fits: pd.DataFrame | None = None
    ) -> CalibrationResult:
        """Test ranks again, e.g. saved from a long run: the ``summary`` and ``band`` of that run.

        ``ranks`` holds one column per parameter and one row per replication, whole numbers in
        ``0 .. ranked_draws``; ``fits`` defaults to an empty table with one row per replication.

        Examples
        --------
        >>> ranks = pd.DataFrame({"mu": [0, 19] * 20})  # every truth at an end: far too narrow
        >>> CalibrationResult.from_ranks(ranks, 19).summary[["bins", "in_band"]]
                   bins  in_band
        parameter
        mu            8    False
        """
        if not isinstance(ranks, pd.DataFrame) or ranks.empty:
            raise ValueError("ranks must be a non-empty DataFrame, one column per parameter")
        ranked_draws = check_int(ranked_draws, "ranked_draws", minimum=1)
        values = ranks.to_numpy()
        if not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() > ranked_draws:
            raise ValueError(f"ranks must be whole numbers in 0 .. ranked_draws = {ranked_draws}")
        band_prob = check_level(band_prob, "band_prob")
        z, lower, upper = _band(len(ranks), ranked_draws + 1, band_prob)
        summary = _summarise(ranks, ranked_draws, lower, upper)
        fits = pd.DataFrame(index=ranks.index) if fits is None else fits
        band = pd.DataFrame({"z": z, "lower": lower, "upper": upper})
        return cls(ranks=ranks, summary=summary, fits=fits, band=band, ranked_draws=ranked_draws, band_prob=band_prob)

    def ecdf(self, parameter: str) -> np.ndarray:
        """The ECDF of one parameter's ranks at ``band["z"]``: the fraction of ranks below each level."""
        if parameter not in self.ranks.columns:
            raise ValueError(f"parameter: {parameter!r} was not checked; the result has {list(self.ranks.columns)}")
        counts = np.bincount(self.ranks[parameter].to_numpy(), minlength=self.ranked_draws + 1)
        return np.cumsum(counts)[:-1] / len(self.ranks)


def simulation_based_calibration(
    builder: Callable[..., Any],
    simulator: Callable[[np.random.Generator], tuple[Mapping[str, Any], Mapping[str, Any]]],
    *,
    n_sims: int = 100,
    var_names: str | Sequence[str] | None = None,
    ranked_draws: int = 99,
    fit_options: Mapping[str, Any] | None = None,
    fitter: Callable[[Any, int], Any] | None = None,
    band_prob: float = 0.95,
    seed: Seed = DEFAULT_SEED,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationResult:
    """Simulation-based calibration (Talts et al. 2018) of a model and its fitter.

    Each replication: ``data, truth = simulator(rng)``; ``model = builder(**data)``; fit it
    (``hbm_lib.fit(model, seed=..., **fit_options)``, or ``fitter(model, seed)``); thin the draws
    to ``ranked_draws`` evenly spaced ones (across chains) and count, for every element of every
    checked parameter, the draws below the true value (ties split at random). The simulator must
    draw the parameters from the prior the model states and the data from its likelihood. It
    may redraw both when the data are unusable (decided on the data alone: the ranks are
    uniform given the data, so conditioning on them keeps them uniform), never the data alone.

    Two tests per parameter. ``p_value``: Pearson's chi-square test of the ranks in
    ``min(20, max(2, n_sims // 5))`` bins of nearly equal width (about 5 or more expected per
    bin; rough below 10 replications). ``in_band``: the ECDF of the ranks at each rank level
    ``z_i = i / (L + 1)`` stays inside the simultaneous band of Säilynoja et al. (2022), the
    pointwise binomial intervals ``{k : P(X <= k) >= g, P(X >= k) >= g}``, ``X ~ Binomial(n_sims,
    z_i)``, with ``g`` the ``1 - band_prob`` quantile of ``min_i min(P(X <= k_i), P(X >= k_i))``
    over 5,000 simulated sets of uniform ranks: uniform ranks stay inside with probability
    ``band_prob``. Both fail by chance at their nominal rate: with many parameters, expect a few.

    Parameters
    ----------
    builder : callable
        Called as ``builder(**data)``; returns the model to fit (e.g. :func:`hbm_lib.hierarchical_normal`,
        or ``functools.partial`` of it with the priors set).
    simulator : callable
        Called as ``simulator(rng)`` with a :class:`numpy.random.Generator`; returns ``(data,
        truth)``: the keyword arguments of ``builder``, and the true value of each parameter
        (``{"mu": 1.3, "theta": array of n}``), shaped like one posterior draw of it.
    n_sims : int, default 100
        Replications.
    var_names : str or sequence of str, optional
        Parameters to check (default: every key of ``truth``).
    ranked_draws : int, default 99
        ``L``: posterior draws each truth is ranked among; the fit must return at least as
        many. ``L + 1`` rank levels; the draws should be nearly independent (thin MCMC to about
        its effective sample size).
    fit_options : mapping, optional
        Options of :func:`hbm_lib.fit` (``method``, ``draws``, ``chains``, ...); not ``seed``,
        which is set per replication. ``keep_log_likelihood`` defaults to False here.
    fitter : callable, optional
        Your own fitter instead, ``fitter(model, seed) -> xarray.DataTree`` (or the posterior
        Dataset) with ``chain`` and ``draw`` dims, e.g. ``pm.sample`` on a model you wrote.
    band_prob : float, default 0.95
        Simultaneous coverage of the ECDF band.
    seed : int or numpy.random.Generator
        Seeds the simulations, the fits and the tie-breaking: the same seed gives the same ranks.
    progress : callable, optional
        Called as ``progress(done, n_sims)`` after each replication.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    TypeError
        An unknown option in ``fit_options``; an argument that should be callable and is not; a
        simulator that does not return two mappings; a builder that does not take its keywords.
    ValueError
        ``n_sims`` or ``ranked_draws`` below 1; fewer draws than ``ranked_draws``; both
        ``fit_options`` and ``fitter``; a truth of the wrong shape, or not finite; a parameter
        missing from the truth or the posterior; simulated data the builder refuses.

    Examples
    --------
    The two-level normal model with Eight Schools' standard errors, on the exact grid posterior,
    and the same model with a prior on ``sigma_unit`` narrower than the one the data came from:

    >>> import functools
    >>> import numpy as np
    >>> from hbm_lib import hierarchical_normal
    >>> se = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])
    >>> def simulate(rng):  # the prior of hierarchical_normal's defaults, then the data
    ...     mu, sigma = rng.normal(0, 10), abs(rng.normal(0, 5))
    ...     theta = rng.normal(mu, sigma, size=8)
    ...     return {"y": rng.normal(theta, se), "se": se}, {"mu": mu, "sigma_unit": sigma, "theta": theta}
    >>> grid = {"method": "grid", "draws": 100, "chains": 1}
    >>> result = simulation_based_calibration(
    ...     hierarchical_normal, simulate, n_sims=40, ranked_draws=19, fit_options=grid, seed=1)
    >>> result.ranks.shape  # 40 replications; mu, sigma_unit and 8 thetas
    (40, 10)
    >>> row = result.summary.loc["sigma_unit"]
    >>> int(row["bins"]), round(float(row["p_value"]), 2), bool(row["in_band"])
    (8, 0.99, True)
    >>> narrow = functools.partial(hierarchical_normal, sigma_unit_prior=("half_normal", 1.0))
    >>> wrong = simulation_based_calibration(narrow, simulate, n_sims=40, ranked_draws=19, fit_options=grid, seed=1)
    >>> row = wrong.summary.loc["sigma_unit"]
    >>> bool(row["p_value"] < 1e-6), bool(row["in_band"])
    (True, False)
    """
    sims = _check_settings(builder, simulator, fitter, progress, n_sims, ranked_draws, band_prob)
    if fitter is not None and fit_options is not None:
        raise ValueError("fit_options are options of hbm_lib.fit; with your own fitter, set them inside it")
    fit = _default_fitter(fit_options, ranked_draws) if fitter is None else fitter
    names = None if var_names is None else ([var_names] if isinstance(var_names, str) else list(var_names))
    rng = as_generator(seed)
    rank_rows, fit_rows = [], []
    for i, child in enumerate(rng.spawn(sims)):
        ranks, fit_row = _replicate(i, child, builder, simulator, fit, names, ranked_draws)
        rank_rows.append(ranks)
        fit_rows.append(fit_row)
        if progress is not None:
            progress(i + 1, sims)
    index = pd.RangeIndex(sims, name="replication")
    ranks = pd.DataFrame(rank_rows, index=index)
    ranks.columns.name = "parameter"
    fits = pd.DataFrame(fit_rows, index=index)
    return CalibrationResult.from_ranks(ranks, ranked_draws, band_prob=band_prob, fits=fits)


def _check_settings(builder, simulator, fitter, progress, n_sims, ranked_draws, band_prob) -> int:
    for name, value in (("builder", builder), ("simulator", simulator)):
        if not callable(value):
            raise TypeError(f"{name} must be callable; got {type(value).__name__}")
    for name, value in (("fitter", fitter), ("progress", progress)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None; got {type(value).__name__}")
    check_int(ranked_draws, "ranked_draws", minimum=1)
    check_level(band_prob, "band_prob")
    return check_int(n_sims, "n_sims", minimum=1)


def _default_fitter(fit_options: Any, ranked_draws: int) -> Callable[[Any, int], Any]:
    """``hbm_lib.fit`` with the options checked up front (names, and enough draws to rank among)."""
    from hbm_lib.inference import fit, quiet_sampler

    if fit_options is not None and not isinstance(fit_options, Mapping):
        raise TypeError(f"fit_options must be a mapping of hbm_lib.fit options; got {type(fit_options).__name__}")
    options = {"keep_log_likelihood": False, **(fit_options or {})}
    parameters = inspect.signature(fit).parameters
    if "seed" in options:
        raise ValueError("fit_options: seed is set per replication from simulation_based_calibration's own seed")
    reject_unknown("fit_options", options, [p for p in parameters if p not in ("model", "seed", "unknown")])
    chains, draws = (options.get(k, parameters[k].default) for k in ("chains", "draws"))
    if isinstance(chains, int) and isinstance(draws, int) and chains * draws < ranked_draws:
        raise ValueError(
            f"fit_options: chains x draws = {chains} x {draws} = {chains * draws} posterior draws, fewer than "
            f"ranked_draws = {ranked_draws}; ask for more draws or rank among fewer"
        )

    def fitter(model, seed: int):
        with quiet_sampler(logging.CRITICAL):  # convergence is recorded per replication instead
            return fit(model, seed=seed, **options)

    return fitter


def _replicate(i, rng, builder, simulator, fit, names, ranked_draws) -> tuple[dict[str, int], dict[str, Any]]:
    """One replication: simulate, build, fit, rank."""
    from hbm_lib.inference import check_convergence

    sim_rng, tie_rng = rng.spawn(2)
    data, truth = _simulate(simulator, sim_rng, i)
    names = list(truth) if names is None else names
    missing = [name for name in names if name not in truth]
    if missing:  # before the fit, which may take a while
        raise ValueError(f"var_names: {missing[0]!r} has no true value; the simulator's truth has {sorted(truth)}")
    try:
        model = builder(**data)
    except (TypeError, ValueError) as err:
        raise (TypeError if isinstance(err, TypeError) else ValueError)(
            f"builder did not accept the data simulated in replication {i} (keywords {sorted(data)}): {err}. "
            "The simulator must only produce data the model takes: redraw the parameters and the data together when "
            "the data are unusable (ranks stay uniform given the data), never the data alone"
        ) from err
    start = time.perf_counter()
    idata = fit(model, int(rng.integers(2**31 - 1)))
    seconds = time.perf_counter() - start
    posterior = group_dataset(idata, "the fit's result")
    ranks = {}
    for name in names:
        ranks.update(_ranks(posterior, name, truth, ranked_draws, tie_rng, i))
    checked = check_convergence(idata, var_names=names, ess_min=0, warn=False)
    row = {
        "seconds": seconds, "draws": posterior.sizes["chain"] * posterior.sizes["draw"],
        "divergences": int(checked["divergences"].max()), "ess_bulk_min": float(checked["ess_bulk"].min()),
        "r_hat_max": float(checked["r_hat"].max()),
    }
    return ranks, row


def _simulate(simulator, rng, i) -> tuple[dict[str, Any], dict[str, Any]]:
    out = simulator(rng)
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(part, Mapping) for part in out)):
        raise TypeError(
            f"simulator must return a tuple (data, truth) of two mappings; replication {i} got {type(out).__name__}"
        )
    return dict(out[0]), dict(out[1])


def _ranks(posterior, name, truth, ranked_draws, rng, i) -> dict[str, int]:
    """Rank of each element of ``truth[name]`` among ``ranked_draws`` evenly thinned draws."""
    if name not in posterior.data_vars:
        raise ValueError(f"var_names: {name!r} is not in the posterior; it has {list(posterior.data_vars)}")
    values = posterior[name].transpose(*_SAMPLE_DIMS, ...)
    draws = values.to_numpy().reshape(values.sizes["chain"] * values.sizes["draw"], -1)
    true = np.asarray(truth[name], dtype=float)
    if true.shape != values.shape[2:]:
        raise ValueError(
            f"simulator: the truth of {name!r} has shape {true.shape} in replication {i}, but one posterior "
            f"draw of it has shape {values.shape[2:]}"
        )
    if not np.isfinite(true).all():
        raise ValueError(f"simulator: the truth of {name!r} is not finite in replication {i}")
    if len(draws) < ranked_draws:
        raise ValueError(f"the fit returned {len(draws)} draws of {name!r}, fewer than ranked_draws = {ranked_draws}")
    kept = draws[np.round(np.linspace(0, len(draws) - 1, ranked_draws)).astype(int)]
    true = true.reshape(-1)
    ties = (kept == true).sum(axis=0)
    ranks = (kept < true).sum(axis=0) + rng.integers(0, ties + 1)
    return dict(zip(_element_names(values, name), ranks.tolist()))


def _element_names(values, name: str) -> list[str]:
    dims = values.dims[2:]
    if not dims:
        return [name]
    labels = [values[d].to_numpy().tolist() if d in values.coords else range(values.sizes[d]) for d in dims]
    return [f"{name}[{', '.join(map(str, combo))}]" for combo in itertools.product(*labels)]


def _summarise(ranks: pd.DataFrame, ranked_draws: int, lower, upper) -> pd.DataFrame:
    n = len(ranks)
    levels = ranked_draws + 1
    bins = min(20, max(2, n // 5), levels)
    # rank levels split into `bins` contiguous groups of nearly equal size; exact expected counts
    sizes = np.array([len(part) for part in np.array_split(np.arange(levels), bins)])
    edges = np.concatenate([[0], np.cumsum(sizes)])
    rows = {}
    for parameter in ranks.columns:
        r = ranks[parameter].to_numpy()
        observed = np.histogram(r, bins=edges)[0]
        chi2, p = stats.chisquare(observed, n * sizes / levels)
        ecdf = np.cumsum(np.bincount(r, minlength=levels))[:-1] / n
        rows[parameter] = {
            "variable": str(parameter).split("[", 1)[0], "n_sims": n, "bins": bins, "chi_square": float(chi2),
            "p_value": float(p), "in_band": bool(np.all((ecdf >= lower) & (ecdf <= upper))),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("parameter").astype({"n_sims": int, "bins": int})


@functools.lru_cache(maxsize=32)
def _band(n: int, levels: int, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous ``prob`` band for the ECDF of ``n`` ranks uniform on ``0 .. levels - 1``, at
    ``z_i = i / levels`` (Säilynoja et al. 2022, the simulation construction), as fractions."""
    z = np.arange(1, levels) / levels
    counts = np.random.default_rng(_BAND_SEED).multinomial(n, np.full(levels, 1.0 / levels), size=BAND_SIMULATIONS)
    below = np.cumsum(counts, axis=1)[:, :-1]  # ranks below each level i = 1 .. levels - 1
    tails = np.minimum(stats.binom.cdf(below, n, z), stats.binom.sf(below - 1, n, z))
    smallest = np.sort(tails.min(axis=1))
    gamma = smallest[int(np.floor((1 - prob) * BAND_SIMULATIONS))]  # P(smallest < gamma) <= 1 - prob
    k = np.arange(n + 1)[:, None]
    inside = (stats.binom.cdf(k, n, z) >= gamma) & (stats.binom.sf(k - 1, n, z) >= gamma)
    lower = np.argmax(inside, axis=0)
    upper = n - np.argmax(inside[::-1], axis=0)
    return z, lower / n, upper / n


def plot_calibration(
    result: CalibrationResult,
    parameters: str | Sequence[str] | None = None,
    *,
    axes: Any = None,
    ncols: int = 4,
):
    """ECDF of each parameter's ranks minus the uniform CDF, inside its simultaneous band.

    One panel per parameter: the difference between the ECDF of the ranks and the uniform CDF
    at each rank level (the line), with the band of :attr:`CalibrationResult.band` shaded; the
    title gives the parameter and its chi-square p-value, in red when the ECDF leaves the band.

    Drawn here with matplotlib rather than with ArviZ: ``arviz_plots.plot_ecdf_pit`` (ArviZ 1.3)
    draws a simultaneous band only with ``method="envelope"``, which it deprecates (a
    ``FutureWarning``); that band is built for continuous PIT values at the points ``i / n_sims``,
    and ranks are rescaled by their largest observed value rather than by ``ranked_draws``. Its
    default, ``method="pot_c"``, tests uniformity another way and draws no band. Here the ECDF
    and the band are evaluated at the rank levels themselves, where the band is exact.

    Parameters
    ----------
    result : CalibrationResult
    parameters : str or sequence of str, optional
        Columns of ``result.ranks`` to draw (default: all).
    axes : matplotlib Axes or array of Axes, optional
        One per parameter; by default a new figure with ``ncols`` panels per row.
    ncols : int, default 4

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes
        The panels used, one per parameter.

    Examples
    --------
    >>> ranks = pd.DataFrame({"mu": np.arange(40) % 20, "tau": np.r_[[0] * 20, [19] * 20]})
    >>> axes = plot_calibration(CalibrationResult.from_ranks(ranks, 19))
    >>> [ax.get_title() for ax in axes]  # flat ranks, and ranks all at the ends
    ['mu  (p = 1)', 'tau  (p = 3.1e-24)']
    """
    import matplotlib.pyplot as plt

    if not isinstance(result, CalibrationResult):
        raise TypeError(f"result must be a CalibrationResult; got {type(result).__name__}")
    names = list(result.ranks.columns) if parameters is None else ([parameters] if isinstance(parameters, str) else list(parameters))
    for name in names:
        result.ecdf(name)  # a ValueError for a parameter that was not checked
    ncols = check_int(ncols, "ncols", minimum=1)
    created = axes is None
    if created:
        rows = -(-len(names) // ncols)
        width = min(ncols, len(names))
        _, axes = plt.subplots(rows, width, figsize=(2.6 * width + 0.6, 2.3 * rows + 0.4), sharex=True, sharey=True, squeeze=False)
    flat = np.atleast_1d(np.asarray(axes, dtype=object)).ravel()
    if len(flat) < len(names):
        raise ValueError(f"axes: {len(flat)} panels for {len(names)} parameters")
    z = np.r_[0.0, result.band["z"].to_numpy(), 1.0]
    lower = np.r_[0.0, result.band["lower"].to_numpy(), 1.0] - z
    upper = np.r_[0.0, result.band["upper"].to_numpy(), 1.0] - z
    for ax, name in zip(flat, names):
        row = result.summary.loc[name]
        ax.fill_between(z, lower, upper, color="0.85", lw=0, label=f"{result.band_prob:.0%} band")
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.plot(z, np.r_[0.0, result.ecdf(name), 1.0] - z, color="tab:blue" if row["in_band"] else "tab:red", lw=1.4)
        ax.set_title(f"{name}  (p = {row['p_value']:.2g})", color="black" if row["in_band"] else "tab:red", fontsize=9.5)
    for ax in flat[len(names):]:
        ax.set_visible(False)
    for ax in flat[: len(names)]:
        ax.set(xlabel="normalised rank", ylabel="ECDF − uniform")
        if created:
            ax.label_outer()
    return flat[: len(names)]

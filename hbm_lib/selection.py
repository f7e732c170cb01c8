"""Which grouping pools best? Compare three-level models by leave-one-out cross-validation.

A hierarchical model pools each unit towards the mean of its group, so the grouping is a modelling
choice: pooling creators by genre helps when genres really differ, and costs a little (one more
standard deviation to learn) when they do not. :func:`compare_groupings` fits the model of
:func:`hbm_lib.hierarchical_normal` once per candidate grouping, plus the single-population
(two-level) model as a baseline, and ranks them by their expected log predictive density estimated
with PSIS-LOO (:func:`arviz.loo`, :func:`arviz.compare`), or exactly when the models are fitted
with ``method="grid"`` (:func:`hbm_lib.loo`).

The log-likelihood that :func:`hbm_lib.fit` stores is the density of a unit's estimate with
its own ``theta`` integrated out, ``N(y[i] | mu_group[g[i]], se[i]^2 + sigma_unit^2)``: the
comparison asks how well each grouping predicts *a held-out unit's estimate from its group*, which
is what a grouping is for.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from hbm_lib._validation import (
    DEFAULT_SEED,
    align,
    as_finite_1d,
    as_labels,
    as_positive_1d,
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_same_length,
    unit_labels,
)
from hbm_lib.elpd import _exact_elpd_data, loo
from hbm_lib.inference import check_convergence, fit
from hbm_lib.models import hierarchical_normal

__all__ = ["GroupingChoice", "GroupingComparison", "between_group_chi2", "choose_grouping", "compare_groupings",
           "elpd_diff_z"]

_METHODS = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")
# ArviZ's own warning from az.loo; we replace it by one message naming the model(s)
_ARVIZ_PARETO_WARNING = re.escape("Estimated shape parameter of Pareto distribution is greater than")


@dataclass(frozen=True)
class GroupingComparison:
    """The result of :func:`compare_groupings`.

    Attributes
    ----------
    table : pandas.DataFrame
        :func:`arviz.compare`'s table, unrounded: indexed by model name, best first, with columns
        ``rank``, ``elpd_diff`` (``elpd[model] - elpd[best]``, so 0 for the best and negative for
        the others), ``dse``, ``p_worse``, ``diag_diff``, ``diag_elpd``, ``p`` (the effective
        number of parameters, ``p_loo``), ``elpd`` (``elpd_loo``), ``se`` and ``weight``.
    fits : dict of str to xarray.DataTree
        The fit of every model, the baseline first, then the groupings in the order given.
    loo : dict of str to arviz.ELPDData
        :func:`loo` of every fit, pointwise (``elpd_i``; ``pareto_k`` for PSIS-LOO).
    pareto_k : pandas.DataFrame
        Pareto k of every unit (rows, indexed by unit label) under every model (columns, in the
        order of ``fits``); NaN for a model whose leave-one-out is exact.
    convergence : pandas.DataFrame
        :func:`hbm_lib.check_convergence` of every fit, indexed by ``(model, variable)``.
    baseline : str
        The name of the single-population model.
    """

    table: pd.DataFrame
    fits: dict[str, xr.DataTree]
    loo: dict[str, az.ELPDData]
    pareto_k: pd.DataFrame
    convergence: pd.DataFrame
    baseline: str = "single population"

    def versus(self, reference: str | None = None) -> pd.DataFrame:
        """ELPD difference of every model from ``reference`` (default: the baseline), with its se.

        ``elpd_diff = elpd[model] - elpd[reference]`` (positive: the model predicts better than
        the reference) and ``dse``, its standard error from the paired per-unit differences, both
        from :func:`arviz.compare` with ``reference=``; ``p_better``, ArviZ's normal-approximation
        probability that the model predicts better than the reference; and ``z = elpd_diff /
        dse`` (0 for the reference itself). Unlike the ``elpd_diff`` column of ``table``, which is
        measured from the *best* model, this one answers "does this grouping beat the single
        population?" for every candidate.

        Returns
        -------
        pandas.DataFrame
            Indexed by model (in the order of ``fits``), columns ``elpd_diff``, ``dse``,
            ``p_better`` and ``z``.
        """
        reference = self.baseline if reference is None else reference
        if reference not in self.loo:
            raise ValueError(f"reference must be one of the models {list(self.loo)}; got {reference!r}")
        table = az.compare(dict(self.loo), reference=reference, round_to="none")
        out = table.loc[list(self.loo), ["elpd_diff", "dse", "p_better"]].astype(float)
        out["z"] = [_ratio(d, s) for d, s in zip(out["elpd_diff"], out["dse"])]
        return out.rename_axis("model")


def compare_groupings(
    y: ArrayLike,
    se: ArrayLike,
    groupings: Mapping[str, ArrayLike],
    *,
    units: ArrayLike | None = None,
    baseline: str = "single population",
    method: str = "stacking",
    seed: int = DEFAULT_SEED,
    model_options: Mapping[str, Any] | None = None,
    fit_options: Mapping[str, Any] | None = None,
    keep_fits: bool = True,
    progress: Callable[[str], Any] | None = None,
) -> GroupingComparison:
    """Compare candidate groupings of the units, and no grouping, by PSIS-LOO.

    For every candidate grouping, the three-level model ``hierarchical_normal(y, se,
    groups=labels, units=units, **model_options)`` is fitted with ``hbm_lib.fit(model,
    **fit_options)``; the two-level model without groups is always added under the name
    ``baseline``. Each fit is seeded with ``seed + k``, ``k = 0`` for the baseline and ``1, 2, ...``
    for the candidates in the order given, so the same call gives the same numbers. The sampling
    settings are :func:`hbm_lib.fit`'s own (``hbm_lib.inference.FIT_DEFAULTS``) unless
    ``fit_options`` changes them, retries included. :func:`loo` then gives every model's expected
    log predictive density (ELPD) of a held-out unit's estimate, by PSIS-LOO (:func:`arviz.loo`)
    for NUTS fits and exactly for ``fit_options={"method": "grid"}`` (no Pareto k then, and no
    Monte Carlo error: the fast route when many comparisons are run), and :func:`arviz.compare`
    ranks the models.

    How to read the table. ``elpd`` (the ELPD estimated by PSIS-LOO) is on the log scale, higher
    is better, and only differences between models on the same units mean anything.
    ``elpd_diff`` is each model's ELPD minus the best one's (0 for the best, negative for the
    others) and ``dse`` the standard error of that difference, computed from the paired per-unit
    differences (so it is much smaller than the ``se`` of either ``elpd``). A shortfall of less
    than about two ``dse`` (and, whatever the ``dse``, of less than about 4 on the log scale, which
    ArviZ flags in ``diag_diff``) is not a distinction the data can make: prefer the simpler model
    or report both. :func:`elpd_diff_z` gives the shortfall ``-elpd_diff / dse``, and
    :meth:`GroupingComparison.versus` the difference of every model from the baseline rather than
    from the best. ``weight`` is the weight of each model in the combination that predicts held-out
    units best (stacking, by default): weights sum to 1, they are not probabilities that a model is
    true, and a model close to the best can still get weight 0 when it adds nothing to it.
    ``diag_elpd`` counts the units whose Pareto k exceeded ArviZ's threshold, in which case the
    ``elpd`` of that model is unreliable (this function also warns).

    Parameters
    ----------
    y, se : array-like
        Unit estimates and their standard errors (all positive). Pandas inputs (``y``, ``se``,
        ``units`` and every grouping) are paired by index, arrays by position.
    groupings : mapping of str to array-like
        Name of each candidate grouping to its group labels, one per unit, e.g.
        ``{"genre": genre, "size quartile": size_q}``. Each needs at least two groups and may not
        put every unit in a group of its own. Write them down before looking at the estimates.
    units : array-like, optional
        Unique unit labels (default: the index of ``y`` if it is a Series, else ``0..n-1``).
    baseline : str, default "single population"
        Name of the two-level model without groups; no candidate may use it.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}, default "stacking"
        How :func:`arviz.compare` computes the weights.
    seed : int
        Seed of the first fit (the baseline); fit ``k`` uses ``seed + k``.
    model_options : mapping, optional
        Passed on to :func:`hbm_lib.hierarchical_normal` for every model (priors,
        ``parameterization``, ``unit_dim``, ``group_dim``, ...). ``sigma_group_prior`` is unused
        by the baseline.
    fit_options : mapping, optional
        Passed on to :func:`hbm_lib.fit` for every model (``draws``, ``target_accept``,
        ``nuts_sampler``, ``retries``, ...; not ``seed``).
    keep_fits : bool, default True
        Keep every model's fit (``fits``) and its convergence table. With ``False`` and
        ``fit_options={"method": "grid"}`` nothing is fitted at all: each model's exact
        leave-one-out densities come straight from its quadrature (no PyMC model, no draws),
        the fast route for comparing many groupings on many data sets; ``fits`` and
        ``convergence`` are then empty. With NUTS the fits are made and dropped.
    progress : callable, optional
        Called with one line of text after each fit (e.g. ``progress=print``); the library
        prints nothing itself.

    Returns
    -------
    GroupingComparison
        ``table`` (ArviZ's comparison), ``fits``, ``loo``, ``pareto_k`` (units x models) and
        ``convergence`` (indexed by model and variable).

    Warns
    -----
    UserWarning
        When any unit's Pareto k exceeds the threshold ``good_k`` that ArviZ uses (``min(1 -
        1/log10(S), 0.7)`` for ``S`` draws in all), naming the models, how many units and the
        largest k; ArviZ's own, less specific warning is suppressed. Also when a fit has not
        converged (from :func:`hbm_lib.check_convergence`, prefixed with the model name).

    Raises
    ------
    ValueError
        On invalid or mislabelled ``y``, ``se`` or ``units``; empty ``groupings``; a grouping with
        the wrong number of labels, a missing label, a single group or one group per unit; a
        grouping named like ``baseline``; an unknown ``method``; or ``groups`` among
        ``model_options``.
    TypeError
        When ``groupings`` is not a mapping, a name is not a string, or an option of
        :func:`hbm_lib.fit` or :func:`hbm_lib.hierarchical_normal` is unknown.

    See Also
    --------
    hbm_lib.hierarchical_normal : the model fitted for every grouping.
    arviz.compare : the comparison table.

    Examples
    --------
    Sixty simulated creators in three genres, on the exact route (a fraction of a second; leave
    out ``fit_options`` for NUTS and PSIS-LOO):

    >>> from hbm_lib.simulate import simulate_creator_summaries
    >>> summaries, truth = simulate_creator_summaries(60, 3, sigma_genre=0.4, seed=2)
    >>> result = compare_groupings(
    ...     summaries["estimate"], summaries["se"], {"genre": summaries["genre"]},
    ...     fit_options={"method": "grid"}, seed=1,
    ... )
    >>> sorted(result.table.index)
    ['genre', 'single population']
    >>> round(float(result.table["weight"].sum()), 6)
    1.0
    >>> result.table.index[0], result.loo["genre"].kind
    ('genre', 'loo_kfold')
    """
    y_arr, se_arr, labels, groupings = _check_inputs(y, se, units, groupings, baseline)
    method = check_choice(method, "method", _METHODS)
    seed = check_int(seed, "seed", minimum=0)
    model_options = _options(model_options, "model_options", forbidden=("groups", "units"))
    fit_options = _options(fit_options, "fit_options", forbidden=("seed",))
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable such as print; got {progress!r}")

    keep_fits = check_bool(keep_fits, "keep_fits")
    models = [(baseline, None), *groupings.items()]
    if not keep_fits and fit_options.get("method") == "grid":
        fits, elpds = {}, _exact_elpds(y_arr, se_arr, labels, models, model_options, fit_options, progress)
    else:
        fits = _fit_models(y_arr, se_arr, labels, models, model_options, fit_options, seed, progress)
        elpds = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_ARVIZ_PARETO_WARNING, category=UserWarning)
            for name, idata in fits.items():
                elpds[name] = loo(idata)
    table = az.compare(elpds, method=method, round_to="none")
    _warn_pareto_k(elpds)
    unit_dim = model_options.get("unit_dim", labels.name or "unit")
    pareto_k = pd.DataFrame(
        {name: np.full(len(labels), np.nan) if elpd.pareto_k is None else np.asarray(elpd.pareto_k).ravel()
         for name, elpd in elpds.items()},
        index=pd.Index(labels, name=unit_dim),
    )
    pareto_k.columns.name = "model"
    convergence = (pd.concat({name: _convergence(name, idata) for name, idata in fits.items()}, names=["model", "variable"])
                   if fits else pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["model", "variable"])))
    if not keep_fits:
        fits = {}
    return GroupingComparison(table=table, fits=fits, loo=elpds, pareto_k=pareto_k, convergence=convergence, baseline=baseline)


def _fit_models(y, se, labels, models, model_options, fit_options, seed, progress) -> dict[str, xr.DataTree]:
    """Fit every model (``seed + k`` for the k-th), reporting progress."""
    fits: dict[str, xr.DataTree] = {}
    for k, (name, groups) in enumerate(models):
        start = time.perf_counter()
        model = hierarchical_normal(y, se, groups=groups, units=labels, **model_options)
        fits[name] = fit(model, **fit_options, seed=seed + k)
        if progress is not None:
            progress(f"compare_groupings: fitted {name!r} ({k + 1} of {len(models)}) in {time.perf_counter() - start:.1f} s")
    return fits


def _exact_elpds(y, se, labels, models, model_options, fit_options, progress) -> dict[str, az.ELPDData]:
    """Exact leave-one-out of every model straight from its quadrature: no PyMC model, no draws."""
    from hbm_lib.models import _normal_grid as grid
    from hbm_lib.models.normal import normal_spec

    unknown = set(fit_options) - {"method", "draws", "chains", "keep_theta", "keep_log_likelihood"}
    if unknown:
        raise TypeError(f"fit_options: {sorted(unknown)} do not apply to the exact route")
    elpds = {}
    for k, (name, groups) in enumerate(models):
        start = time.perf_counter()
        post = grid.NormalPosterior(normal_spec(y, se, groups=groups, units=labels, **model_options))
        q = grid.quadrature(post)
        exact = grid.exact_loo(post, q)
        unit_dim = post.spec.unit_dim
        elpd_i = xr.DataArray(exact["elpd_i"], dims=[unit_dim], coords={unit_dim: post.spec.units.tolist()})
        lpd_i = xr.DataArray(exact["lpd_i"], dims=[unit_dim], coords={unit_dim: post.spec.units.tolist()})
        elpds[name] = _exact_elpd_data(elpd_i, lpd_i, exact["edge_mass"], n_samples=int(q.mass.size))
        if progress is not None:
            progress(f"compare_groupings: exact LOO of {name!r} ({k + 1} of {len(models)}) in {time.perf_counter() - start:.2f} s")
    return elpds


def _options(options: Any, name: str, *, forbidden: tuple[str, ...]) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{name} must be a mapping of keyword arguments; got {type(options).__name__}")
    for key in forbidden:
        if key in options:
            raise ValueError(f"{name}: {key!r} is set by compare_groupings itself")
    return dict(options)


def _check_inputs(y, se, units, groupings, baseline):
    """Align the estimates, standard errors, labels and every grouping by label; check them."""
    if not isinstance(groupings, Mapping):
        raise TypeError(
            f"groupings must be a mapping of name to group labels, e.g. {{'genre': genres}}; got {type(groupings).__name__}"
        )
    if not isinstance(baseline, str) or not baseline:
        raise TypeError(f"baseline must be a non-empty string; got {baseline!r}")
    named = {f"groupings[{k!r}]": v for k, v in groupings.items()}
    aligned = align(y=y, se=se, units=units, **named)
    y_arr = as_finite_1d(aligned["y"], "y")
    se_arr = as_positive_1d(aligned["se"], "se")
    n = check_same_length(y=y_arr, se=se_arr)
    labels = unit_labels(aligned["units"], aligned["y"] if isinstance(aligned["y"], pd.Series) else aligned["se"], n)
    checked = _check_groupings({k: aligned[f"groupings[{k!r}]"] for k in groupings}, n, baseline)
    return y_arr, se_arr, labels, checked


CHOICE_RULES = ("loo", "largest_chi2")


@dataclass(frozen=True)
class GroupingChoice:
    """The result of :func:`choose_grouping`.

    Attributes
    ----------
    chosen : str
        The grouping chosen (the baseline's name when none was chosen).
    rule : str
        How it was chosen.
    statistic : pandas.Series
        What the rule compared, per grouping: the elpd difference from the baseline in standard
        errors of the difference (``"loo"``; 0 for the baseline), or the between-group
        chi-squared statistic (``"largest_chi2"``).
    comparison : GroupingComparison or None
        The leave-one-out comparison (``"loo"`` only).
    """

    chosen: str
    rule: str
    statistic: pd.Series
    comparison: GroupingComparison | None = None


def choose_grouping(
    y: ArrayLike,
    se: ArrayLike,
    groupings: Mapping[str, ArrayLike],
    *,
    rule: str = "loo",
    margin: float = 2.0,
    baseline: str = "single population",
    model_options: Mapping[str, Any] | None = None,
    fit_options: Mapping[str, Any] | None = None,
    seed: int = DEFAULT_SEED,
) -> GroupingChoice:
    """Choose what to pool by: a rule applied to candidate groupings.

    * ``rule="loo"``: :func:`compare_groupings` (with ``keep_fits=False``), then the best model
      if it beats the single-population baseline by more than ``margin`` standard errors of the
      difference (``dse``), else the baseline. This is the chapter's recommendation, applied to
      groupings written down *before* looking at the estimates; the more candidates it is given,
      the more its winner's advantage is inflated by selection.
    * ``rule="largest_chi2"``: the grouping whose group means of the estimates differ most
      (:func:`between_group_chi2`), with no check at all. This is the double-dipping route the
      book measures, not a recommendation.

    Parameters
    ----------
    y, se, groupings, baseline, model_options, fit_options, seed
        As for :func:`compare_groupings` (``rule="loo"`` only uses the last three).
    rule : {"loo", "largest_chi2"}, default "loo"
    margin : float, default 2.0
        How many ``dse`` the best model must lead the baseline by (``"loo"``).

    Returns
    -------
    GroupingChoice

    Examples
    --------
    >>> from hbm_lib.simulate import simulate_creator_summaries
    >>> s, _ = simulate_creator_summaries(120, 4, sigma_genre=0.4, seed=2)
    >>> choose_grouping(s["estimate"], s["se"], {"genre": s["genre"]}, fit_options={"method": "grid"}).chosen
    'genre'
    """
    rule = check_choice(rule, "rule", CHOICE_RULES)
    margin = check_finite(margin, "margin")
    if margin < 0:
        raise ValueError(f"margin must be >= 0; got {margin}")
    if rule == "largest_chi2":
        _check_inputs(y, se, None, groupings, baseline)
        chi2 = pd.Series({name: between_group_chi2(y, se, labels) for name, labels in groupings.items()}, name="chi2")
        return GroupingChoice(chosen=str(chi2.idxmax()), rule=rule, statistic=chi2)
    comparison = compare_groupings(y, se, groupings, baseline=baseline, model_options=model_options,
                                   fit_options=fit_options, seed=seed, keep_fits=False)
    z = comparison.versus()["z"].rename("z")
    best = str(z.idxmax())
    chosen = best if best != baseline and z[best] > margin else baseline
    return GroupingChoice(chosen=chosen, rule=rule, statistic=z, comparison=comparison)


def between_group_chi2(y: ArrayLike, se: ArrayLike, groups: ArrayLike) -> float:
    """Precision-weighted chi-squared statistic of the differences between group means.

    ``sum_g W_g (ybar_g - ybar)^2`` with ``W_g = sum_{i in g} 1/se_i^2``, ``ybar_g`` the
    precision-weighted mean of group ``g`` and ``ybar`` that of all units: Cochran's ``Q`` between
    groups, about chi-squared with ``G - 1`` degrees of freedom when the groups share one mean and
    the units one effect. It measures how different the groups' estimates *look*; the book uses it
    to show what choosing the grouping that looks most different does (the double-dipping trap),
    not as a way to choose one.

    Parameters
    ----------
    y, se : array-like
        Unit estimates and their positive standard errors (pandas inputs aligned by label).
    groups : array-like
        One group label per unit.

    Returns
    -------
    float

    Examples
    --------
    >>> round(between_group_chi2([0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0], ["a", "a", "b", "b"]), 6)
    4.0
    """
    aligned = align(y=y, se=se, groups=groups)
    y_arr = as_finite_1d(aligned["y"], "y")
    se_arr = as_positive_1d(aligned["se"], "se")
    n = check_same_length(y=y_arr, se=se_arr)
    codes, _ = as_labels(aligned["groups"], n, "groups")
    w = 1.0 / se_arr**2
    w_g, wy_g = np.bincount(codes, weights=w), np.bincount(codes, weights=w * y_arr)
    return float(np.sum(w_g * (wy_g / w_g - wy_g.sum() / w_g.sum()) ** 2))


def elpd_diff_z(table: pd.DataFrame) -> pd.Series:
    """Each model's shortfall from the best in standard errors: ``-elpd_diff / dse``.

    ``table`` is an :func:`arviz.compare` table (e.g. ``compare_groupings(...).table``), whose
    ``elpd_diff`` is ``elpd[model] - elpd[best]``: 0 for the best model, negative for the others
    (ArviZ 1.x's convention), so the shortfall is positive. The best model gets 0 (ArviZ reports
    ``elpd_diff = dse = 0`` for it, which would divide to NaN); any other model whose difference
    is exactly 0 gets 0 too. Values below about 2 mean the data cannot tell that model from the
    best.

    Parameters
    ----------
    table : pandas.DataFrame
        With columns ``elpd_diff`` and ``dse``.

    Returns
    -------
    pandas.Series
        Named ``elpd_diff_z``, indexed like ``table``.

    Examples
    --------
    >>> table = pd.DataFrame({"elpd_diff": [0.0, -3.0, -1.0], "dse": [0.0, 1.5, 2.0]},
    ...                      index=["genre", "single population", "random"])
    >>> elpd_diff_z(table).tolist()
    [0.0, 2.0, 0.5]
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a DataFrame from arviz.compare; got {type(table).__name__}")
    missing = [c for c in ("elpd_diff", "dse") if c not in table.columns]
    if missing:
        raise ValueError(f"table must have columns 'elpd_diff' and 'dse' (arviz.compare); missing {missing}")
    if (table["elpd_diff"] > 0).any():
        raise ValueError(
            "table: elpd_diff must be <= 0 (elpd[model] - elpd[best], as arviz.compare reports it "
            "without reference=); a positive value means the table is measured from another model"
        )
    z = [_ratio(-float(d), float(s)) for d, s in zip(table["elpd_diff"], table["dse"])]
    return pd.Series(z, index=table.index, name="elpd_diff_z", dtype=float)


# --------------------------------------------------------------------------------------------
# helpers


def _ratio(diff: float, dse: float) -> float:
    """``diff / dse`` with ``0 / 0 = 0`` (a model compared with itself)."""
    if diff == 0.0:
        return 0.0
    if dse == 0.0:
        return math.copysign(math.inf, diff)
    return diff / dse


def _check_groupings(groupings: Mapping[str, Any], n: int, baseline: str) -> dict[str, np.ndarray]:
    """Validate the candidate groupings; return name -> labels (one per unit)."""
    if not groupings:
        raise ValueError("groupings is empty; give at least one grouping, e.g. {'genre': genres}")
    out = {}
    for name, labels in groupings.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"groupings: names must be non-empty strings; got {name!r}")
        if name == baseline:
            raise ValueError(
                f"groupings: the name {name!r} is taken by the baseline (the model without groups); "
                "rename the grouping or pass baseline=..."
            )
        if labels is None:
            raise ValueError(f"groupings[{name!r}] is None; give one group label per unit")
        codes, categories = as_labels(labels, n, f"groupings[{name!r}]")
        if len(categories) < 2:
            raise ValueError(
                f"groupings[{name!r}] has a single group ({categories[0]!r}); a grouping needs at "
                "least two groups (the model without groups is the baseline)"
            )
        if len(categories) == n:
            raise ValueError(
                f"groupings[{name!r}] puts every unit in a group of its own; one group per unit is "
                "no pooling, not a grouping"
            )
        out[name] = labels.to_numpy() if isinstance(labels, (pd.Series, pd.Index)) else np.asarray(labels, dtype=object)
    return out


def _warn_pareto_k(loo: Mapping[str, az.ELPDData]) -> None:
    """One UserWarning naming every model with a unit's Pareto k above ArviZ's ``good_k``."""
    problems = []
    for name, elpd in loo.items():
        if elpd.pareto_k is None:  # exact leave-one-out: nothing was importance-sampled
            continue
        k = np.asarray(elpd.pareto_k, dtype=float).ravel()
        good_k = float(elpd.good_k)
        bad = k > good_k
        if bad.any():
            problems.append(f"{name!r} ({int(bad.sum())} of {k.size} units, largest k = {k.max():.2f})")
    if problems:
        warnings.warn(
            f"Pareto k above {good_k:.2f} in {'; '.join(problems)}: the PSIS-LOO estimate of those "
            "models is unreliable (a unit's estimate moves the posterior too much to be left out "
            "by importance sampling). Look at the units in result.pareto_k, and do not trust "
            "small elpd differences involving these models.",
            UserWarning,
            stacklevel=3,
        )


def _convergence(name: str, idata: xr.DataTree) -> pd.DataFrame:
    """check_convergence, re-issuing its warnings prefixed with the model name."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = check_convergence(idata)
    for w in caught:
        warnings.warn(f"model {name!r}: {w.message}", w.category, stacklevel=3)
    return table

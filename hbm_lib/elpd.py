"""Leave-one-out expected log predictive density: exact for the grid posterior, else PSIS.

:func:`loo` is the one entry point for leaving out one unit: it returns ArviZ's own result object
either way, so :func:`arviz.compare` and :func:`hbm_lib.compare_groupings` take both kinds alike.
The exact route exists because the grid posterior of :func:`hbm_lib.hierarchical_normal` can leave
each unit out by quadrature, which ArviZ has no way to know about; PSIS-LOO is ArviZ's.

:func:`leave_one_group_out` leaves out a whole group at once, for the question "how well would
this model predict a group it has not seen?", exactly, for the same model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.utils import ELPDDataLOOKFold
from numpy.typing import ArrayLike
from scipy.special import logsumexp

from hbm_lib._validation import align, as_finite_1d, as_labels, as_positive_1d, check_bool, check_choice, check_same_length

__all__ = ["LOO_METHODS", "LOO_EDGE_MASS", "leave_one_group_out", "loo"]

#: The options of :func:`leave_one_group_out`'s ``model_options``: the priors of the model.
_PRIOR_OPTIONS = ("mu_prior_mean", "mu_prior_sd", "sigma_unit_prior", "sigma_group_prior")
_NODE_BLOCK = 512  # quadrature nodes evaluated at a time: memory O(_NODE_BLOCK x units)

LOO_METHODS = ("auto", "exact", "psis")
#: Share of a unit's leave-one-out posterior in the outermost cells of the grid above which
#: :func:`loo` warns that the exact value may be off (the grid was chosen for all the data; the
#: error of that unit's elpd is of the order of the mass cut off, a few times this share).
LOO_EDGE_MASS = 1e-2


def loo(idata: xr.DataTree, *, method: str = "auto") -> az.ELPDData:
    """Leave-one-out expected log predictive density of a fit: exact where the fit allows, else PSIS.

    A :func:`hbm_lib.hierarchical_normal` model fitted with ``fit(model, method="grid")`` carries
    the exact leave-one-out densities ``log p(y_i | y_-i)`` of every unit (its ``exact_loo`` group,
    computed by quadrature with the unit left out: no refits, no importance sampling, no Monte
    Carlo error). ``method="auto"`` uses them when present and PSIS-LOO (:func:`arviz.loo`)
    otherwise; ``"exact"`` insists on them and ``"psis"`` ignores them. The exact result is an
    :class:`arviz_stats.utils.ELPDDataLOOKFold` with one fold per unit (exact leave-one-out is
    n-fold cross-validation), so :func:`arviz.compare` takes it like any other: ``pareto_k`` is
    None (there is nothing to smooth), ``p`` is ``sum(lpd_i - elpd_i)`` with ``lpd_i`` the exact
    full-data predictive density, and ``se`` is ``sqrt(n var(elpd_i))`` as for PSIS-LOO.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit with a ``log_likelihood`` group (PSIS) or an ``exact_loo`` group (exact).
    method : {"auto", "exact", "psis"}, default "auto"

    Returns
    -------
    arviz.ELPDData
        With pointwise ``elpd_i`` (and ``pareto_k`` for PSIS-LOO).

    Warns
    -----
    UserWarning
        For an exact result when more than 1% of some unit's leave-one-out posterior lies in the
        outermost cells of the grid (the unit moves the posterior so much that the grid chosen for
        all the data may cut its leave-one-out posterior short).

    Raises
    ------
    ValueError
        When ``method="exact"`` and the fit has no ``exact_loo`` group, or ``method`` is unknown.

    Examples
    --------
    >>> from hbm_lib import eight_schools, fit, hierarchical_normal
    >>> schools = eight_schools()
    >>> idata = fit(hierarchical_normal(schools["y"], schools["sigma"]), method="grid", seed=1)
    >>> result = loo(idata)
    >>> result.kind, result.n_folds, round(result.elpd, 1)
    ('loo_kfold', 8, -30.6)
    """
    method = check_choice(method, "method", LOO_METHODS)
    if not isinstance(idata, xr.DataTree):
        raise TypeError(f"idata must be an xarray.DataTree (a fit); got {type(idata).__name__}")
    has_exact = "exact_loo" in idata.children
    if method == "exact" and not has_exact:
        raise ValueError(
            "method='exact': this fit has no exact_loo group; exact leave-one-out comes with "
            "fit(hierarchical_normal(...), method='grid') (with keep_log_likelihood=True)"
        )
    if method == "psis" or not has_exact:
        return az.loo(idata, pointwise=True, var_name="y")
    exact = idata["exact_loo"].to_dataset()
    posterior = idata["posterior"]
    return _exact_elpd_data(exact["elpd_i"], exact["lpd_i"], exact.attrs.get("edge_mass", 0.0),
                            n_samples=int(posterior.sizes["chain"] * posterior.sizes["draw"]))


def _exact_elpd_data(elpd_i: xr.DataArray, lpd_i: xr.DataArray, edge_mass: float, *, n_samples: int) -> az.ELPDData:
    """Exact leave-one-out as ArviZ's container for n-fold cross-validation (warns at the grid's edge)."""
    n = elpd_i.size
    if edge_mass > LOO_EDGE_MASS:
        warnings.warn(
            f"exact leave-one-out: up to {edge_mass:.1%} of a unit's leave-one-out posterior lies at the "
            "edge of the grid, so its elpd may be off; look for the unit whose estimate moves the "
            "posterior most",
            UserWarning,
            stacklevel=3,
        )
    return ELPDDataLOOKFold(
        elpd=float(elpd_i.sum()), se=float(np.sqrt(n * elpd_i.var())), p=float((lpd_i - elpd_i).sum()),
        n_samples=n_samples, n_data_points=n, scale="log", warning=False, good_k=None, elpd_i=elpd_i,
        n_folds=n, p_kfold_i=lpd_i - elpd_i,
    )


def leave_one_group_out(
    y: ArrayLike,
    se: ArrayLike,
    groups: ArrayLike,
    *,
    pool_by_group: bool = True,
    model_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Exact log predictive density of each group's estimates given all the other groups'.

    Leave-one-out (:func:`loo`) asks how well a model predicts a new unit of a group it has seen;
    this asks how well it predicts a whole *new group*: for each group ``g``, the joint density
    ``log p(y_g | y_-g)`` of its units' estimates under the model fitted to the other groups. With
    ``pool_by_group=True`` the model is the three-level :func:`hbm_lib.hierarchical_normal` with
    ``groups`` as its grouping, so a held-out group's units share one unknown group mean drawn
    from the population of groups; with ``False`` it is the two-level model (one population),
    which predicts them independently. Summing over groups and comparing the two models is
    leave-one-group-out cross-validation of the grouping.

    Computed without sampling error. Given the standard deviations, the units' effects, ``mu``
    and the held-out group's mean integrate out in closed form: ``mu | sds, y_-g`` is normal
    (each training group adds precision ``a / (1 + sigma_group^2 a)`` with ``a = sum 1 / (se^2 +
    sigma_unit^2)``, by Sherman-Morrison), so ``y_g`` is normal with mean ``E[mu | sds, y_-g]``
    and covariance ``diag(se^2 + sigma_unit^2) + (sigma_group^2 + Var(mu | sds, y_-g)) 11'``
    (``sigma_group = 0`` for the two-level model), whose density the matrix determinant lemma
    gives in O(units). That is averaged over the exact posterior of the standard deviations given
    ``y_-g`` with the quadrature of ``fit(..., method="grid")``: one quadrature per group.

    Parameters
    ----------
    y, se : array-like
        Unit estimates and their positive standard errors.
    groups : array-like
        Group label of each unit (at least three groups, so that each fit keeps two). pandas
        Series are paired by index with ``y``.
    pool_by_group : bool, default True
        Three-level model pooled by ``groups`` (True) or the single population (False).
    model_options : mapping, optional
        The model's priors, as for :func:`hbm_lib.hierarchical_normal`: ``mu_prior_mean``,
        ``mu_prior_sd``, ``sigma_unit_prior``, ``sigma_group_prior``.

    Returns
    -------
    pandas.DataFrame
        One row per group (in order of first appearance; the index is named after a ``groups``
        Series, else ``"group"``), with ``elpd`` (``log p(y_g | y_-g)``) and ``units`` (the
        group's number of units).

    Raises
    ------
    ValueError
        For fewer than three groups, inputs of different lengths or units, or an unknown model
        option.

    Examples
    --------
    >>> y = [0.1, 0.3, 0.2, 1.1, 0.9, 1.0, 0.5, 0.4, 0.6]
    >>> se, groups = [0.1] * 9, list("aaabbbccc")
    >>> by_group = leave_one_group_out(y, se, groups)["elpd"]
    >>> one_population = leave_one_group_out(y, se, groups, pool_by_group=False)["elpd"]
    >>> bool(by_group.sum() > one_population.sum())  # whole groups move together: the grouping helps
    True
    """
    from hbm_lib.models import _normal_grid as grid
    from hbm_lib.models.normal import normal_spec

    inputs = align(y=y, se=se, groups=groups)
    y_arr, se_arr = as_finite_1d(inputs["y"], "y"), as_positive_1d(inputs["se"], "se")
    check_same_length(y=y_arr, se=se_arr)
    codes, labels = as_labels(inputs["groups"], len(y_arr), "groups")
    if len(labels) < 3:
        raise ValueError(f"groups must have at least 3 distinct labels (each fit keeps the others); got {len(labels)}")
    pool_by_group = check_bool(pool_by_group, "pool_by_group")
    options = dict(model_options or {})
    unknown = sorted(set(options) - set(_PRIOR_OPTIONS))
    if unknown:
        raise ValueError(f"model_options: {unknown[0]!r} is not one of {_PRIOR_OPTIONS}")
    rows = []
    for k in range(len(labels)):
        held = codes == k
        spec = normal_spec(y_arr[~held], se_arr[~held], groups=codes[~held] if pool_by_group else None, **options)
        post = grid.NormalPosterior(spec)
        q = grid.quadrature(post)
        rows.append(_held_out_group_lpd(post, q, y_arr[held], se_arr[held]))
    name = inputs["groups"].name if isinstance(inputs["groups"], pd.Series) and inputs["groups"].name else "group"
    return pd.DataFrame({"elpd": rows, "units": np.bincount(codes, minlength=len(labels))},
                        index=pd.Index(labels, name=name))


def _held_out_group_lpd(post, q, y_test: np.ndarray, se_test: np.ndarray) -> float:
    """log p(y_test | training data) for one quadrature (see :func:`leave_one_group_out`)."""
    spec = post.spec
    log_u, log_g = np.meshgrid(q.s_u, q.s_g, indexing="ij")
    keep = q.mass.ravel() > 0
    sd_unit, sd_group = np.exp(log_u.ravel()[keep]), np.exp(log_g.ravel()[keep])  # exp(-inf) = 0: two levels
    log_mass = np.log(q.mass.ravel()[keep])
    order, starts = post._order, post._starts  # training units sorted by group, each group's first
    y_train, se_sq_train = spec.y[order], post.se_sq[order]
    parts = []
    for b in range(0, len(sd_unit), _NODE_BLOCK):
        s_u, var_g = sd_unit[b:b + _NODE_BLOCK, None], sd_group[b:b + _NODE_BLOCK, None] ** 2
        inv_d = 1.0 / (s_u**2 + se_sq_train)
        a_g = np.add.reduceat(inv_d, starts, axis=1)
        b_g = np.add.reduceat(inv_d * y_train, starts, axis=1)
        precision = 1.0 / spec.mu_prior_sd**2 + (a_g / (1.0 + var_g * a_g)).sum(axis=1, keepdims=True)
        mu_mean = (spec.mu_prior_mean / spec.mu_prior_sd**2 + (b_g / (1.0 + var_g * a_g)).sum(axis=1, keepdims=True)) / precision
        shared = var_g + 1.0 / precision  # the held-out units' common shift: group mean and mu
        d = s_u**2 + se_test**2
        r, a = y_test - mu_mean, (1.0 / d).sum(axis=1, keepdims=True)
        log_det = np.log(d).sum(axis=1, keepdims=True) + np.log1p(shared * a)
        quad = (r**2 / d).sum(axis=1, keepdims=True) - shared * (r / d).sum(axis=1, keepdims=True) ** 2 / (1.0 + shared * a)
        parts.append(-0.5 * (len(y_test) * np.log(2 * np.pi) + log_det + quad).ravel())
    return float(logsumexp(np.concatenate(parts) + log_mass))

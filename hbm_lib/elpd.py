"""Leave-one-out expected log predictive density of a fit: exact for the grid posterior, else PSIS.

:func:`loo` is the one entry point: it returns ArviZ's own result object either way, so
:func:`arviz.compare` and :func:`hbm_lib.compare_groupings` take both kinds alike. The exact route
exists because the grid posterior of :func:`hbm_lib.hierarchical_normal` can leave each unit out by
quadrature, which ArviZ has no way to know about; PSIS-LOO is ArviZ's.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import xarray as xr
from arviz_stats.utils import ELPDDataLOOKFold

from hbm_lib._validation import check_choice

__all__ = ["LOO_METHODS", "LOO_EDGE_MASS", "loo"]

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

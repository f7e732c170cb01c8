"""What every model family needs from PyMC: one quiet call to ``pm.sample`` and the DataTree helpers.

Kept apart from :mod:`hbm_lib.inference` (the public ``fit``) so that the model families can use it
without importing ``fit`` itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

__all__ = ["quiet_sampler"]

#: Second entropy word of the NumPy stream used for exact draws after sampling, so that it is
#: independent of the streams PyMC derives from the same seed for the chains.
CONDITIONAL_STREAM = 0x68626D

#: How many float64 values one block of post-processing may hold (32 MiB).
CHUNK_ELEMENTS = 1 << 22

SAMPLE_DIMS = ("chain", "draw")


@contextlib.contextmanager
def quiet_sampler(level: int = logging.WARNING) -> Iterator[None]:
    """Silence PyMC's logger below ``level`` for the duration of a ``with`` block.

    PyMC reports progress (``Initializing NUTS``, ``Sampling 4 chains``) at INFO and sampler
    problems (divergences) at WARNING or ERROR. :func:`hbm_lib.fit` already runs inside
    ``quiet_sampler()``; wrap your own ``pm.sample`` calls in it, or use
    ``quiet_sampler(logging.CRITICAL)`` in a loop whose fits are checked with
    :func:`hbm_lib.check_convergence` instead. A stricter level already set is kept.

    Examples
    --------
    >>> import logging
    >>> with quiet_sampler(logging.CRITICAL):
    ...     logging.getLogger("pymc").getEffectiveLevel() == logging.CRITICAL
    True
    """
    logger = logging.getLogger("pymc")
    previous = logger.level
    logger.setLevel(max(previous, level))
    try:
        yield
    finally:
        logger.setLevel(previous)


def sample_nuts(model: pm.Model, settings: dict[str, Any], options: dict[str, Any]) -> xr.DataTree:
    """``pm.sample`` with the given settings, quietly, with coordinates as PyMC itself types them."""
    with quiet_sampler():
        idata = pm.sample(model=model, **settings, **options)
    # nutpie labels coordinates with object arrays, PyMC with NumPy's own dtype (e.g. <U1): use
    # the latter in every group, so that a fit's layout does not depend on the sampler
    for name, node in idata.children.items():
        dims = [dim for dim in node.dims if dim in model.coords]
        if dims:
            idata[name] = node.to_dataset().assign_coords({dim: coord(model, dim) for dim in dims})
    return idata


def coord(model: pm.Model, dim: str) -> np.ndarray:
    """Coordinate values as PyMC stores them in its own output (e.g. ``<U1``, not object)."""
    return np.asarray(model.coords[dim])


def conditional_rng(seed: int) -> np.random.Generator:
    """The NumPy generator for the exact draws that follow sampling with ``seed``."""
    return np.random.default_rng([seed, CONDITIONAL_STREAM])


def add_observed(idata: xr.DataTree, name: str, values: np.ndarray, dim: str, labels: np.ndarray) -> None:
    """Put the data into ``observed_data`` unless PyMC did (it leaves the group empty when the
    likelihood is a ``pm.Potential``, as in the marginal normal model)."""
    if "observed_data" in idata.children and name in idata["observed_data"].data_vars:
        return
    observed = xr.Dataset({name: ((dim,), values.copy())}, coords={dim: labels})
    if "observed_data" in idata.children:
        observed = idata["observed_data"].to_dataset().merge(observed)
    idata["observed_data"] = observed


def add_log_likelihood(idata: xr.DataTree, name: str, values: np.ndarray, dim: str, labels: np.ndarray) -> None:
    """The pointwise log-likelihood ``values`` (chain, draw, unit) as the ``log_likelihood`` group."""
    posterior = idata["posterior"]
    idata["log_likelihood"] = xr.Dataset(
        {name: (("chain", "draw", dim), values)},
        coords={"chain": posterior["chain"].to_numpy(), "draw": posterior["draw"].to_numpy(), dim: labels},
    )


def mark_exact(posterior: xr.Dataset, how: str) -> xr.Dataset:
    """Record in the posterior's attrs that its draws are independent draws from the exact posterior
    (``hbm_lib_draws = "exact"``), which :func:`hbm_lib.check_convergence` reads."""
    return posterior.assign_attrs(inference_library=how, hbm_lib_draws="exact")

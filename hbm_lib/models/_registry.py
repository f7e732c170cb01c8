"""Which builder made a PyMC model: the link from a model to what :func:`hbm_lib.fit` must do with it.

Every builder in :mod:`hbm_lib.models` registers a *spec* for the model it returns: the data and
choices the model was built from, and a ``fit_nuts`` method that samples the model and post-processes
the result (exact draws of integrated-out parameters, the pointwise log-likelihood, the observed
data). Keyed by the model object itself, so an entry disappears with its model.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

import pymc as pm
import xarray as xr


class ModelSpec(Protocol):
    """What :func:`hbm_lib.fit` needs to know about a model built by a builder of this package."""

    #: Short name of the family: ``"hierarchical_normal"``, ``"beta_binomial"``, ``"logistic"``.
    family: str

    def fit_nuts(
        self, model: pm.Model, settings: dict[str, Any], options: dict[str, Any], *, keep_theta: bool, keep_log_likelihood: bool
    ) -> xr.DataTree: ...


_SPECS: weakref.WeakKeyDictionary[pm.Model, Any] = weakref.WeakKeyDictionary()

BUILDERS = "hierarchical_normal, beta_binomial, varying_slopes_logistic or varying_slopes_logistic_from_rows"


def register(model: pm.Model, spec: Any) -> pm.Model:
    _SPECS[model] = spec
    return model


def spec_of(model: Any, name: str = "model") -> Any:
    """The spec of a model built by this package, or a ``ValueError`` naming ``name``."""
    spec = _SPECS.get(model) if isinstance(model, pm.Model) else None
    if spec is None:
        raise ValueError(f"{name} must be a model built by hbm_lib ({BUILDERS}); got {type(model).__name__}")
    return spec

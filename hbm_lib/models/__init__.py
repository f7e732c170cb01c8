"""PyMC builders for the book's hierarchical models, one module per family.

* ``hbm_lib.models.normal``: :func:`hierarchical_normal`, unit estimates with known standard
  errors, in two or three levels (centered, non-centered or marginal);
* ``hbm_lib.models.binomial``: :func:`beta_binomial`, success counts per unit with
  Beta-distributed rates (its exact posterior, without MCMC, by ``fit(model, method="grid")``);
* ``hbm_lib.models.logistic``: :func:`varying_slopes_logistic` (summary counts) and
  :func:`varying_slopes_logistic_from_rows` (one binary outcome per row), an experiment run in
  several groups with a varying intercept and treatment effect per group.

Every builder returns a :class:`pymc.Model` that :func:`hbm_lib.fit` knows how to sample and
post-process, so that every posterior holds the same named variables whatever the
parameterization. Each model can also be sampled with plain ``pm.sample``; ``fit`` adds the exact
draws of integrated-out parameters, the pointwise log-likelihood and the observed data.
"""

from hbm_lib.models.binomial import beta_binomial
from hbm_lib.models.logistic import varying_slopes_logistic, varying_slopes_logistic_from_rows
from hbm_lib.models.normal import hierarchical_normal

__all__ = [
    "hierarchical_normal",
    "beta_binomial",
    "varying_slopes_logistic",
    "varying_slopes_logistic_from_rows",
]

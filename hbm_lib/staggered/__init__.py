"""Staggered adoption: the imputation estimator, its pre-trend test, and two-way fixed effects.

Units adopt a treatment at different periods and stay treated; some never adopt. The untreated
outcome follows the two-way fixed-effects model ``Y_it(0) = alpha_i + lambda_t + e_it`` (parallel
trends), and the effect of the treatment on unit ``i`` in period ``t`` is ``tau_it = Y_it -
Y_it(0)``, which may differ across units and grow with time since adoption.

* :func:`imputation_estimator` is the estimator of Borusyak, Jaravel and Spiess (2024): fit the
  fixed effects on the untreated observations only, impute ``Y_it(0)`` for every treated
  observation, and average the differences; with their clustered, conservative standard errors.
* :func:`pretrend_test` is their test of parallel trends: lead indicators on the untreated
  observations, a joint Wald test.
* :func:`two_way_fixed_effects` is the regression that was standard before: OLS on unit and period
  effects and a treatment dummy (or event-time dummies) on all observations. With heterogeneous or
  dynamic effects it compares newly treated units with already-treated ones and can be badly
  biased; the book uses it as the comparator, and :func:`twfe_weights` shows why: the weight its
  static coefficient puts on each treated cell, negative for some.
* :func:`unit_covariance` is the joint covariance of the imputation estimator's unit effects,
  which share the fitted period effects, and :func:`pool_unit_effects` is stage 2: the book's
  hierarchical normal model of the unit effects, with their errors independent or correlated,
  computed exactly.

All take a long panel: one row per unit and period, with the period at which the unit is first
treated (missing for never-treated units) repeated on each of its rows (conventions in
``hbm_lib.staggered._panel``). Panels may be unbalanced.
"""

from hbm_lib.staggered.covariance import unit_covariance
from hbm_lib.staggered.imputation import ImputationResult, imputation_estimator
from hbm_lib.staggered.pooling import PooledEffects, pool_unit_effects
from hbm_lib.staggered.regression import PretrendTest, pretrend_test, twfe_weights, two_way_fixed_effects

__all__ = [
    "ImputationResult", "imputation_estimator", "PretrendTest", "pretrend_test", "two_way_fixed_effects",
    "twfe_weights", "unit_covariance", "PooledEffects", "pool_unit_effects",
]

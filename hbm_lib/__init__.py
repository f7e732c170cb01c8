"""hbm_lib: small, tested helpers for the book *Hierarchical Bayesian Models in Practice*.

Modules
-------
pooling
    No pooling, complete pooling and empirical-Bayes partial pooling of unit estimates, and
    the book's estimators side by side (``pooling_methods``).
robust_eb
    Robust empirical-Bayes confidence intervals, whose average coverage holds when the true
    effects are not normal.
estimates
    From raw rows to one estimate and standard error per unit: group means, and differences in
    means between the arms of an experiment.
models
    PyMC builders: the hierarchical normal model (two or three levels; centered, non-centered,
    marginal), the hierarchical beta-binomial model, and
    varying-intercept, varying-slope logistic models.
inference
    ``fit`` (seeded NUTS with exact post-processing, strict options, retries; or the exact
    posterior without MCMC, ``method="grid"``),
    ``check_convergence`` and ``posterior_summary``.
decisions
    Posterior probabilities for decisions: one unit beats another, the pairwise matrix, an effect
    is positive.
elpd
    Leave-one-out predictive accuracy of a fit (exact for the grid posterior, else PSIS), and
    exact leave-one-group-out for the hierarchical normal model.
selection
    Comparing candidate groupings by leave-one-out predictive accuracy, and choosing one.
staggered
    The imputation estimator of difference-in-differences for staggered adoption, with
    cluster-robust standard errors, and the two-way fixed-effects regression it replaces.
simulate
    Simulated creator experiments and staggered rollouts with a known truth.
metrics
    MSE, interval coverage and width against a known truth, for one method or several.
calibration
    Simulation-based calibration: do a model's fits hold the truth at the nominal rate, over
    its prior? Ranks of true values among posterior draws, their uniformity tests and ECDF plot.
datasets
    Data sets shipped with the package (Eight Schools).
plots
    The book's matplotlib style and shared figures.

Every public name is available from the top level (``hbm_lib.fit``). Importing ``hbm_lib`` is
cheap: a module is imported when one of its names is first used, so code that only pools
estimates never imports PyMC.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "1.0.0"

# public name -> module that defines it
_EXPORTS = {
    "eight_schools": "datasets",
    "group_means": "estimates",
    "difference_in_means": "estimates",
    "no_pooling": "pooling",
    "complete_pooling": "pooling",
    "partial_pooling": "pooling",
    "estimate_tau": "pooling",
    "shrinkage_weight": "pooling",
    "robust_eb_intervals": "robust_eb",
    "robust_critical_value": "robust_eb",
    "worst_case_noncoverage": "robust_eb",
    "pooling_methods": "pooling",
    "POOLING_METHODS": "pooling",
    "mse": "metrics",
    "coverage": "metrics",
    "interval_width": "metrics",
    "score": "metrics",
    "compare_methods": "metrics",
    "top_k_bias": "metrics",
    "hierarchical_normal": "models",
    "beta_binomial": "models",
    "varying_slopes_logistic": "models",
    "varying_slopes_logistic_from_rows": "models",
    "fit": "inference",
    "check_convergence": "inference",
    "posterior_summary": "inference",
    "quiet_sampler": "inference",
    "prob_greater": "decisions",
    "pairwise_prob_greater": "decisions",
    "prob_positive": "decisions",
    "weighted_mean": "inference",
    "CreatorTruth": "simulate",
    "simulate_creator_experiments": "simulate",
    "simulate_creator_summaries": "simulate",
    "StaggeredTruth": "simulate",
    "simulate_staggered_panel": "simulate",
    "ImputationResult": "staggered",
    "imputation_estimator": "staggered",
    "two_way_fixed_effects": "staggered",
    "PretrendTest": "staggered",
    "pretrend_test": "staggered",
    "twfe_weights": "staggered",
    "unit_covariance": "staggered",
    "PooledEffects": "staggered",
    "pool_unit_effects": "staggered",
    "GroupingComparison": "selection",
    "compare_groupings": "selection",
    "elpd_diff_z": "selection",
    "loo": "elpd",
    "leave_one_group_out": "elpd",
    "GroupingChoice": "selection",
    "choose_grouping": "selection",
    "between_group_chi2": "selection",
    "CalibrationResult": "calibration",
    "simulation_based_calibration": "calibration",
    "plot_calibration": "calibration",
    "shrinkage": "plots",
    "use_book_style": "plots",
    "book_style": "plots",
}
_MODULES = (
    "calibration", "datasets", "decisions", "elpd", "estimates", "inference", "metrics", "models", "plots", "pooling",
    "robust_eb", "selection", "simulate", "staggered",
)

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"hbm_lib.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    if name in _MODULES:
        return importlib.import_module(f"hbm_lib.{name}")
    raise AttributeError(f"module 'hbm_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_MODULES])

"""hbm_lib: small, tested helpers for the book *Hierarchical Bayesian Models in Practice*.

Modules
-------
pooling
    No pooling, complete pooling and empirical-Bayes partial pooling of unit estimates.
datasets
    Data sets shipped with the package (Eight Schools).
metrics
    MSE, interval coverage and width against a known truth, for one method or several.
models
    PyMC model builders: the hierarchical normal model (centered, non-centered, marginal), the
    hierarchical beta-binomial model (and its exact grid posterior), varying-intercept,
    varying-slope logistic models; a seeded ``fit`` and ``check_convergence``.
decisions
    Posterior probabilities for decisions: one variant beats another, the pairwise matrix,
    an effect is positive.
plots
    The book's matplotlib style and shared figures.
simulate
    Simulated creator experiments and staggered rollouts with a known truth, and per-creator summaries.
staggered
    The imputation estimator of difference-in-differences for staggered adoption, and the two-way
    fixed-effects regression it replaces.
selection
    Comparing candidate groupings by leave-one-out predictive accuracy.
"""

from hbm_lib.datasets import eight_schools
from hbm_lib.metrics import compare_methods, coverage, interval_width, mse, score
from hbm_lib.decisions import pairwise_prob_greater, prob_greater, prob_positive
from hbm_lib.models import (
    beta_binomial,
    beta_binomial_grid,
    check_convergence,
    fit,
    hierarchical_normal,
    varying_slopes_logistic,
    varying_slopes_logistic_from_rows,
)
from hbm_lib.pooling import complete_pooling, estimate_tau, no_pooling, partial_pooling, shrinkage_weight
from hbm_lib.simulate import (
    CreatorTruth,
    StaggeredTruth,
    simulate_creator_experiments,
    simulate_creator_summaries,
    simulate_staggered_panel,
    summarize_experiments,
)
from hbm_lib.staggered import ImputationResult, imputation_estimator, two_way_fixed_effects
from hbm_lib.selection import GroupingComparison, compare_groupings, elpd_diff_z

__version__ = "0.2.0"

__all__ = [
    "eight_schools",
    "no_pooling",
    "complete_pooling",
    "partial_pooling",
    "estimate_tau",
    "shrinkage_weight",
    "mse",
    "coverage",
    "interval_width",
    "score",
    "compare_methods",
    "hierarchical_normal",
    "beta_binomial",
    "beta_binomial_grid",
    "varying_slopes_logistic",
    "varying_slopes_logistic_from_rows",
    "fit",
    "check_convergence",
    "prob_greater",
    "pairwise_prob_greater",
    "prob_positive",
    "CreatorTruth",
    "simulate_creator_experiments",
    "simulate_creator_summaries",
    "summarize_experiments",
    "StaggeredTruth",
    "simulate_staggered_panel",
    "ImputationResult",
    "imputation_estimator",
    "two_way_fixed_effects",
    "GroupingComparison",
    "compare_groupings",
    "elpd_diff_z",
]

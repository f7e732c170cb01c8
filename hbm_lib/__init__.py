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
    The hierarchical normal model in PyMC (centered, non-centered, marginal), a seeded ``fit``
    and ``check_convergence``.
plots
    The book's matplotlib style and shared figures.
"""

from hbm_lib.datasets import eight_schools
from hbm_lib.metrics import compare_methods, coverage, interval_width, mse, score
from hbm_lib.models import check_convergence, fit, hierarchical_normal
from hbm_lib.pooling import complete_pooling, estimate_tau, no_pooling, partial_pooling, shrinkage_weight

__version__ = "0.1.0"

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
    "fit",
    "check_convergence",
]

"""A sweep of the public functions with the classes of bad input a user's data produce.

Every case must fail early with a ``ValueError`` or ``TypeError`` whose message names the
argument that is wrong (never a NumPy or pandas traceback from deep inside, never a silent NaN).
Functions that take per-unit estimates and standard errors share one table of cases; the others
have their own.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import hbm_lib

Y = [1.0, 2.0, 3.0, 4.0]
SE = [1.0, 1.0, 2.0, 2.0]
GROUPS = ["a", "a", "b", "b"]

# (name of the bad argument, how to break the call)
ESTIMATE_CASES = {
    "nan y": ("y", dict(y=[1.0, np.nan, 3.0, 4.0])),
    "inf y": ("y", dict(y=[1.0, np.inf, 3.0, 4.0])),
    "empty y": ("y", dict(y=[], se=[])),
    "2-d y": ("y", dict(y=[[1.0, 2.0], [3.0, 4.0]])),
    "string y": ("y", dict(y=["1", "2", "x", "4"])),
    "bool y": ("y", dict(y=np.array([True, False, True, False]))),
    "a string for y": ("y", dict(y="1234")),
    "zero se": ("se", dict(se=[1.0, 0.0, 1.0, 1.0])),
    "negative se": ("se", dict(se=[1.0, -1.0, 1.0, 1.0])),
    "nan se": ("se", dict(se=[1.0, np.nan, 1.0, 1.0])),
    "short se": ("se", dict(se=[1.0, 1.0, 1.0])),
    "a DataFrame for se": ("se", dict(se=pd.DataFrame({"se": SE}))),
    "se of other units": ("se", dict(y=pd.Series(Y, index=list("wxyz")), se=pd.Series(SE, index=list("wxyq")))),
    "duplicated index": ("se", dict(y=pd.Series(Y, index=list("wxyz")), se=pd.Series(SE, index=list("wwyz")))),
}
UNIT_CASES = {
    "duplicated units": ("units", dict(units=["a", "b", "a", "c"])),
    "missing unit label": ("units", dict(units=["a", None, "b", "c"])),
    "short units": ("units", dict(units=["a", "b"])),
    "2-d units": ("units", dict(units=np.array([["a", "b"], ["c", "d"]]))),
}
GROUP_CASES = {
    "short groups": ("groups", dict(groups=["a", "b"])),
    "missing group": ("groups", dict(groups=["a", None, "b", "b"])),
    "2-d groups": ("groups", dict(groups=np.array([["a", "a"], ["b", "b"]]))),
    "groups of other units": ("groups", dict(y=pd.Series(Y, index=list("wxyz")), se=pd.Series(SE, index=list("wxyz")), groups=pd.Series(GROUPS, index=list("abcd")))),
}


def _call_pooling(fn):
    def call(y=Y, se=SE, **kwargs):
        return fn(y, se, **kwargs)

    return call


def _call_model(y=Y, se=SE, **kwargs):
    return hbm_lib.hierarchical_normal(y, se, **kwargs)


def _call_compare(y=Y, se=SE, units=None, groups=GROUPS):
    # fails in its checks, before any model is fitted
    return hbm_lib.compare_groupings(y, se, {"g": groups}, units=units)


FUNCTIONS = {
    "no_pooling": (_call_pooling(hbm_lib.no_pooling), True, False),
    "complete_pooling": (_call_pooling(hbm_lib.complete_pooling), True, True),
    "partial_pooling": (_call_pooling(hbm_lib.partial_pooling), True, True),
    "estimate_tau": (_call_pooling(hbm_lib.estimate_tau), False, True),
    "hierarchical_normal": (_call_model, True, True),
    "compare_groupings": (_call_compare, True, True),
}


def _cases():
    for fname, (call, units, groups) in FUNCTIONS.items():
        cases = dict(ESTIMATE_CASES)
        if units:
            cases |= UNIT_CASES
        if groups:
            cases |= GROUP_CASES
        for cname, (argument, kwargs) in cases.items():
            if fname == "compare_groupings" and argument == "groups":
                argument = "groupings\\['g'\\]"
            yield pytest.param(call, argument, kwargs, id=f"{fname}: {cname}")


@pytest.mark.parametrize("call, argument, kwargs", list(_cases()))
def test_bad_per_unit_input_names_the_argument(call, argument, kwargs):
    with pytest.raises((ValueError, TypeError)) as info:
        call(**kwargs)
    assert re.search(rf"(?<!\w){argument}(?!\w)", str(info.value)), str(info.value)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: hbm_lib.partial_pooling(Y, SE, tau=-1.0), "tau must be >= 0"),
        (lambda: hbm_lib.partial_pooling(Y, SE, method="em"), "method must be one of"),
        (lambda: hbm_lib.partial_pooling(Y, SE, level=95), "level must be in"),
        (lambda: hbm_lib.partial_pooling(Y, SE, levl=0.9), "unexpected keyword argument 'levl'"),
        (lambda: hbm_lib.no_pooling(Y, SE, level=True), "level must be a number"),
        (lambda: hbm_lib.shrinkage_weight(SE, tau=float("nan")), "tau must be >= 0"),
        (lambda: hbm_lib.estimate_tau([1.0], [1.0]), "y needs at least 2 values"),
        (lambda: hbm_lib.estimate_tau(Y, SE, groups=list("abcd")), "groups: every unit is its own group"),
        (lambda: hbm_lib.hierarchical_normal(Y, SE, groups=["a"] * 4), "groups has a single group"),
        (lambda: hbm_lib.hierarchical_normal(Y, SE, sigma_unit_prior=("half_normal", -1)), "sigma_unit_prior scale"),
        (lambda: hbm_lib.hierarchical_normal(Y, SE, mu_prior_sd=True), "mu_prior_sd must be a finite number"),
        (lambda: hbm_lib.beta_binomial([1, 2], [3, 1]), "successes must not exceed trials"),
        (lambda: hbm_lib.beta_binomial([1, 2], [3, 4], units=["a", "a"]), "units must be unique"),
        (lambda: hbm_lib.fit(hbm_lib.beta_binomial([1, 2], [3, 4]), method="grid", seed="x"), "seed must be a non-negative integer"),
        (lambda: hbm_lib.varying_slopes_logistic([1, 2], [3, 4], ["a", "b"], [0, 1]), "groups: 'b' has no data in the control"),
        (lambda: hbm_lib.mse([1.0, 2.0], [1.0]), "lengths differ: estimate has 2, truth has 1"),
        (lambda: hbm_lib.coverage([0.0, 2.0], [1.0, 1.0], [0.5, 0.5]), "lower must not exceed upper"),
        (lambda: hbm_lib.score(hbm_lib.no_pooling(Y, SE), Y, strata=["a"]), "strata must have one label per unit"),
        (lambda: hbm_lib.score(pd.DataFrame({"estimate": Y}), Y), "result is missing column"),
        (lambda: hbm_lib.compare_methods({}, Y), "results must be a non-empty mapping"),
        (lambda: hbm_lib.group_means(pd.DataFrame({"g": ["a"], "y": [1.0]}), groups="g", outcome="z"), "missing column"),
        (lambda: hbm_lib.difference_in_means(pd.DataFrame({"u": ["a"] * 4, "t": [0, 0, 1, 5], "y": [1.0] * 4}), unit="u", treated="t", outcome="y"), "'t' \\(treated\\) must be 0 or 1"),
        (lambda: hbm_lib.simulate_creator_experiments(n_creators=1), "n_creators must be at least 2"),
        (lambda: hbm_lib.simulate_creator_experiments(seed=-3), "seed must be a non-negative integer"),
        (lambda: hbm_lib.simulate_staggered_panel(noise_ar=1.0), "noise_ar must be in \\(-1, 1\\)"),
        (lambda: hbm_lib.simulate_staggered_panel(seed="a"), "seed must be a non-negative integer"),
        (lambda: hbm_lib.imputation_estimator([1, 2]), "panel must be a pandas DataFrame"),
        (lambda: hbm_lib.imputation_estimator(pd.DataFrame({"unit": [1]})), "missing column"),
        (lambda: hbm_lib.pretrend_test(pd.DataFrame({"unit": [1]}), leads=0), "leads must be at least 1"),
        (lambda: hbm_lib.prob_greater({"rate": [1]}, "rate", 0, 1), "posterior must be an xarray.DataTree"),
        (lambda: hbm_lib.check_convergence({"mu": [1]}), "idata must be an xarray.DataTree"),
        (lambda: hbm_lib.posterior_summary({"mu": [1]}), "idata must be an xarray.DataTree"),
        (lambda: hbm_lib.fit(object()), "model must be a model built by hbm_lib"),
        (lambda: hbm_lib.elpd_diff_z([1, 2]), "table must be a DataFrame"),
    ],
)
def test_other_bad_input_fails_with_a_clear_message(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()

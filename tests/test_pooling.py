"""Tests for hbm_lib.pooling: known answers, invariants (hypothesis) and bad input."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hbm_lib import eight_schools
from scipy import stats

from hbm_lib.pooling import (
    complete_pooling,
    estimate_tau,
    no_pooling,
    partial_pooling,
    POOLING_METHODS,
    pooling_methods,
    shrinkage_weight,
)
from hbm_lib.robust_eb import robust_eb_intervals

Z975 = stats.norm.ppf(0.975)

# --------------------------------------------------------------------------------------------
# known answers


def test_weight_limits():
    se = np.array([0.5, 1.0, 4.0])
    assert np.array_equal(shrinkage_weight(se, 0.0), np.zeros(3))
    assert np.array_equal(shrinkage_weight(se, np.inf), np.ones(3))
    # tau -> 0 and tau -> inf approach the limits continuously
    assert np.all(shrinkage_weight(se, 1e-8) < 1e-12)
    assert np.all(shrinkage_weight(se, 1e8) > 1 - 1e-12)


def test_weight_is_precision_share():
    se, tau = np.array([1.0, 2.0, 3.0]), 1.5
    expected = (1 / se**2) / (1 / se**2 + 1 / tau**2)
    np.testing.assert_allclose(shrinkage_weight(se, tau), expected, rtol=1e-14)


def test_tau_zero_is_complete_pooling_and_inf_is_no_pooling():
    d = eight_schools()
    cp = complete_pooling(d["y"], d["sigma"])
    pp0 = partial_pooling(d["y"], d["sigma"], tau=0.0)
    np.testing.assert_allclose(pp0[["estimate", "sd"]], cp[["estimate", "sd"]], rtol=1e-12)
    np_ = no_pooling(d["y"], d["sigma"])
    pp_inf = partial_pooling(d["y"], d["sigma"], tau=np.inf)
    np.testing.assert_allclose(pp_inf[["estimate", "sd"]], np_[["estimate", "sd"]], rtol=1e-12)


def test_partial_equals_no_pooling_when_se_tiny():
    y = np.array([3.0, -1.0, 7.0, 2.0])
    out = partial_pooling(y, np.full(4, 1e-6), tau=2.0)
    np.testing.assert_allclose(out["estimate"], y, atol=1e-9)
    assert np.all(out["weight"] > 1 - 1e-10)


def test_equal_se_hand_computation():
    # y = (0, 2, 4, 10), se = 2, tau = 2: w = 4 / (4 + 4) = 1/2; mu_hat = plain mean = 4
    # estimates = (0 + 4)/2, (2 + 4)/2, (4 + 4)/2, (10 + 4)/2 = 2, 3, 4, 7
    # var(mu_hat) = 1 / (4 * 1/8) = 2; sd = sqrt(1/2 * 4 + 1/4 * 2) = sqrt(2.5)
    out = partial_pooling([0.0, 2.0, 4.0, 10.0], [2.0] * 4, tau=2.0)
    np.testing.assert_allclose(out["estimate"], [2.0, 3.0, 4.0, 7.0])
    np.testing.assert_allclose(out["weight"], 0.5)
    np.testing.assert_allclose(out["sd"], np.sqrt(2.5))
    np.testing.assert_allclose(out["pooled_mean"], 4.0)


def test_complete_pooling_eight_schools_matches_bda():
    # Gelman et al. (BDA3, section 5.5): pooled estimate 7.7 with standard error 4.1
    d = eight_schools()
    cp = complete_pooling(d["y"], d["sigma"])
    assert cp["estimate"].iloc[0] == pytest.approx(7.6856, abs=1e-4)
    assert cp["sd"].iloc[0] == pytest.approx(4.0719, abs=1e-4)


def test_interval_is_central_normal():
    out = no_pooling([0.0], [1.0], level=0.9)
    assert out["upper"].iloc[0] == pytest.approx(1.6448536, rel=1e-6)
    assert out["lower"].iloc[0] == pytest.approx(-1.6448536, rel=1e-6)


def test_groups_pool_within_group_only():
    y = [0.0, 2.0, 10.0, 12.0]
    out = complete_pooling(y, [1.0] * 4, groups=["a", "a", "b", "b"])
    np.testing.assert_allclose(out["estimate"], [1.0, 1.0, 11.0, 11.0])
    assert out["group"].tolist() == ["a", "a", "b", "b"]
    pp = partial_pooling(y, [1.0] * 4, groups=["a", "a", "b", "b"], tau=1.0)
    np.testing.assert_allclose(pp["pooled_mean"], [1.0, 1.0, 11.0, 11.0])
    np.testing.assert_allclose(pp["estimate"], [0.5, 1.5, 10.5, 11.5])


def test_units_label_the_rows():
    d = eight_schools()
    out = partial_pooling(d["y"], d["sigma"], units=d["school"])
    assert out.index.tolist() == list("ABCDEFGH")
    series = pd.Series([1.0, 2.0, 3.0], index=["x", "y", "z"])
    assert no_pooling(series, [1.0] * 3).index.tolist() == ["x", "y", "z"]


# --------------------------------------------------------------------------------------------
# estimating tau


def test_tau_is_zero_on_eight_schools_for_every_method():
    d = eight_schools()
    for method in ("mle", "reml", "moments"):
        assert estimate_tau(d["y"], d["sigma"], method=method) == 0.0


def test_tau_mle_matches_brute_force_grid():
    rng = np.random.default_rng(7)
    se = rng.uniform(0.5, 2.0, 40)
    y = rng.normal(1.0, np.sqrt(se**2 + 1.5**2))
    grid = np.linspace(0, 6, 60001)[:, None]
    v = se**2 + grid**2
    mu = np.sum(y / v, axis=1, keepdims=True) / np.sum(1 / v, axis=1, keepdims=True)
    neg2ll = np.sum(np.log(v), axis=1) + np.sum((y - mu) ** 2 / v, axis=1)
    restricted = neg2ll + np.log(np.sum(1 / v, axis=1))

    for method, objective in (("mle", neg2ll), ("reml", restricted)):
        brute = grid[np.argmin(objective), 0]
        # grid step is 1e-4; the optimiser must land within one step of the brute-force optimum
        assert estimate_tau(y, se, method=method) == pytest.approx(brute, abs=1e-4)


def test_tau_moments_matches_dersimonian_laird():
    y = np.array([1.0, 4.0, -2.0, 6.0, 3.0])
    se = np.array([1.0, 2.0, 1.5, 1.0, 3.0])
    w = 1 / se**2
    mu = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - mu) ** 2)
    tau2 = (q - 4) / (np.sum(w) - np.sum(w**2) / np.sum(w))
    assert estimate_tau(y, se, method="moments") == pytest.approx(np.sqrt(tau2), rel=1e-12)


def test_tau_recovered_on_large_simulation():
    # 4000 units with se in [0.5, 1.5] and tau = 2: the MLE's sd is about 0.03, so 0.15 is 5 sd
    rng = np.random.default_rng(11)
    se = rng.uniform(0.5, 1.5, 4000)
    y = rng.normal(rng.normal(3.0, 2.0, 4000), se)
    for method in ("mle", "reml", "moments"):
        assert estimate_tau(y, se, method=method) == pytest.approx(2.0, abs=0.15)


def test_tau_with_groups_removes_group_means():
    # two groups far apart but no spread within them: tau must be 0 with groups, large without
    y = np.array([0.0, 0.1, -0.1, 20.0, 20.1, 19.9])
    se = np.ones(6)
    assert estimate_tau(y, se, groups=[0, 0, 0, 1, 1, 1]) == 0.0
    assert estimate_tau(y, se) > 5


# --------------------------------------------------------------------------------------------
# properties

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
positive = st.floats(min_value=1e-2, max_value=1e2, allow_nan=False)


@st.composite
def unit_data(draw):
    n = draw(st.integers(min_value=2, max_value=30))
    y = draw(arrays(float, n, elements=finite))
    se = draw(arrays(float, n, elements=positive))
    return y, se


@settings(max_examples=200, deadline=None)
@given(se=arrays(float, st.integers(1, 50), elements=positive), tau=st.floats(0, 1e3))
def test_weights_in_unit_interval(se, tau):
    w = shrinkage_weight(se, tau)
    assert np.all((w >= 0) & (w <= 1))


@settings(max_examples=200, deadline=None)
@given(data=unit_data(), tau=st.one_of(st.none(), st.floats(0, 1e3)))
def test_estimate_between_own_and_pooled_mean(data, tau):
    y, se = data
    out = partial_pooling(y, se, tau=tau)
    lo = np.minimum(y, out["pooled_mean"])
    hi = np.maximum(y, out["pooled_mean"])
    slack = 1e-9 * (1 + np.abs(y).max())
    assert np.all(out["estimate"] >= lo - slack)
    assert np.all(out["estimate"] <= hi + slack)
    assert np.all(out["lower"] <= out["upper"])
    assert np.all((out["weight"] >= 0) & (out["weight"] <= 1))


@settings(max_examples=100, deadline=None)
@given(data=unit_data(), seed=st.integers(0, 2**32 - 1))
def test_permuting_units_permutes_output(data, seed):
    y, se = data
    perm = np.random.default_rng(seed).permutation(len(y))
    out = partial_pooling(y, se)
    out_perm = partial_pooling(y[perm], se[perm])
    # tau is a function of the set of units, so it must not depend on their order
    assert estimate_tau(y[perm], se[perm]) == pytest.approx(estimate_tau(y, se), rel=1e-6, abs=1e-9)
    cols = ["estimate", "sd", "weight"]
    np.testing.assert_allclose(
        out_perm[cols].to_numpy(), out[cols].to_numpy()[perm], rtol=1e-6, atol=1e-9 * (1 + np.abs(y).max())
    )


# --------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("fn", [no_pooling, complete_pooling, partial_pooling])
@pytest.mark.parametrize(
    ("y", "se", "match"),
    [
        ([1.0, np.nan], [1.0, 1.0], "y must be finite.*position 1"),
        ([1.0, np.inf], [1.0, 1.0], "y must be finite"),
        ([1.0, 2.0], [1.0, 0.0], "se must be positive; got 0 at position 1"),
        ([1.0, 2.0], [-1.0, 1.0], "se must be positive"),
        ([1.0, 2.0], [1.0, np.nan], "se must be finite"),
        ([1.0, 2.0, 3.0], [1.0, 1.0], "lengths differ: y has 3, se has 2"),
        ([], [], "y is empty"),
        (["a", "b"], [1.0, 1.0], "y must be numeric"),
        ([[1.0, 2.0]], [[1.0, 1.0]], "one-dimensional"),
    ],
)
def test_bad_input_raises(fn, y, se, match):
    with pytest.raises(ValueError, match=match):
        fn(y, se)


@pytest.mark.parametrize("fn", [no_pooling, complete_pooling, partial_pooling])
@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 95, "high"])
def test_bad_level_raises(fn, level):
    with pytest.raises(ValueError, match="level must be"):
        fn([1.0, 2.0], [1.0, 1.0], level=level)


def test_bad_tau_and_method_raise():
    with pytest.raises(ValueError, match="tau must be >= 0"):
        partial_pooling([1.0, 2.0], [1.0, 1.0], tau=-1.0)
    with pytest.raises(ValueError, match="tau must be >= 0"):
        partial_pooling([1.0, 2.0], [1.0, 1.0], tau=np.nan)
    with pytest.raises(ValueError, match="method must be one of"):
        partial_pooling([1.0, 2.0], [1.0, 1.0], method="bayes")


def test_bad_groups_and_units_raise():
    with pytest.raises(ValueError, match="groups must have one label per unit"):
        partial_pooling([1.0, 2.0, 3.0], [1.0] * 3, groups=["a", "b"])
    with pytest.raises(ValueError, match="groups has a missing label at position 1"):
        complete_pooling([1.0, 2.0, 3.0], [1.0] * 3, groups=["a", None, "b"])
    with pytest.raises(ValueError, match="every unit is its own group"):
        partial_pooling([1.0, 2.0, 3.0], [1.0] * 3, groups=["a", "b", "c"])
    with pytest.raises(ValueError, match="units must be unique"):
        no_pooling([1.0, 2.0], [1.0, 1.0], units=["a", "a"])
    with pytest.raises(ValueError, match="units must have one label per unit"):
        no_pooling([1.0, 2.0], [1.0, 1.0], units=["a"])
    with pytest.raises(ValueError, match="units has a missing label at position 1"):
        no_pooling([1.0, 2.0], [1.0, 1.0], units=["a", None])


def test_single_unit_needs_tau():
    with pytest.raises(ValueError, match="at least 2 units to estimate tau"):
        partial_pooling([1.0], [1.0])
    assert partial_pooling([1.0], [1.0], tau=1.0)["estimate"].iloc[0] == 1.0
    with pytest.raises(ValueError, match="y needs at least 2 values"):
        estimate_tau([1.0], [1.0])


# --------------------------------------------------------------------------------------------
# labelled inputs are paired by label, never by position


def _labelled(order):
    y = pd.Series([1.0, 8.0, 3.0, 12.0], index=list("wxyz"))
    se = pd.Series({"w": 1.0, "x": 4.0, "y": 2.0, "z": 6.0}).reindex(list(order))
    return y, se


@pytest.mark.parametrize("fn", [no_pooling, complete_pooling, partial_pooling])
def test_standard_errors_in_another_order_are_aligned_by_label(fn):
    aligned = fn(*_labelled("wxyz"))
    shuffled = fn(*_labelled("zyxw"))
    pd.testing.assert_frame_equal(shuffled, aligned)
    assert aligned.index.tolist() == list("wxyz")


def test_estimate_tau_is_computed_on_aligned_inputs():
    assert estimate_tau(*_labelled("zyxw")) == estimate_tau(*_labelled("wxyz"))
    # the same numbers paired by position would give another tau
    y, se = _labelled("zyxw")
    assert estimate_tau(y.to_numpy(), se.to_numpy()) != estimate_tau(*_labelled("wxyz"))


@pytest.mark.parametrize("fn", [no_pooling, complete_pooling, partial_pooling, estimate_tau])
def test_other_units_are_refused(fn):
    y = pd.Series([1.0, 8.0, 3.0], index=list("abc"))
    se = pd.Series([1.0, 4.0, 2.0], index=list("abd"))
    with pytest.raises(ValueError, match="y and se are labelled by different units: 'c'"):
        fn(y, se)


def test_groups_are_aligned_and_results_keep_the_index_name():
    y = pd.Series([1.0, 2.0, 10.0, 11.0], index=pd.Index(list("abcd"), name="county"))
    se = pd.Series(1.0, index=y.index)
    groups = pd.Series(["g", "g", "h", "h"], index=y.index)[::-1]
    out = partial_pooling(y, se, groups=groups, tau=1.0)
    assert out.index.name == "county" and out["group"].tolist() == ["g", "g", "h", "h"]


def test_shrinkage_weight_keeps_labels():
    w = shrinkage_weight(pd.Series([1.0, 2.0], index=["a", "b"]), 2.0)
    assert w.index.tolist() == ["a", "b"] and w.tolist() == pytest.approx([0.8, 0.5])


# --------------------------------------------------------------------------------------------
# pooling_methods: the estimators side by side


def test_pooling_methods_runs_every_estimator_on_the_same_units():
    d = eight_schools()
    y = pd.Series(d["y"].to_numpy(), index=pd.Index(d["school"].tolist(), name="school"))
    se = pd.Series(d["sigma"].to_numpy(), index=y.index)
    results, idata = pooling_methods(y, se, methods=POOLING_METHODS, fit_options={"draws": 250})
    assert list(results) == ["no pooling", "complete pooling", "empirical Bayes", "full Bayes", "robust EBCI"]
    for frame in results.values():
        assert frame.index.tolist() == list("ABCDEFGH")
    pd.testing.assert_frame_equal(results["empirical Bayes"], partial_pooling(y, se))
    # full Bayes: the exact posterior means (no Monte Carlo error), intervals from the draws
    exact = idata["exact_moments"]["theta_mean"].to_numpy()
    np.testing.assert_allclose(results["full Bayes"]["estimate"], exact, rtol=1e-12)


def test_pooling_methods_normal_interval_uses_the_exact_moments():
    d = eight_schools()
    results, idata = pooling_methods(d["y"], d["sigma"], interval="normal", fit_options={"draws": 1, "chains": 1})
    exact = idata["exact_moments"]
    full = results["full Bayes"]
    np.testing.assert_allclose(full["upper"] - full["estimate"], Z975 * exact["theta_sd"].to_numpy(), rtol=1e-9)
    with pytest.raises(ValueError, match="interval='normal' uses the exact posterior moments"):
        pooling_methods(d["y"], d["sigma"], interval="normal", fit_options={"method": "nuts"})
    with pytest.raises(ValueError, match="interval must be one of"):
        pooling_methods(d["y"], d["sigma"], interval="hdi")
    with pytest.raises(ValueError, match="methods: 'bayes' is not one of"):
        pooling_methods(d["y"], d["sigma"], methods=["no pooling", "bayes"])
    with pytest.raises(ValueError, match="methods must be a non-empty sequence"):
        pooling_methods(d["y"], d["sigma"], methods="no pooling")


def test_pooling_methods_runs_only_what_is_asked_in_a_fixed_order():
    d = eight_schools()
    results, idata = pooling_methods(d["y"], d["sigma"], methods=["robust EBCI", "no pooling"])
    assert list(results) == ["no pooling", "robust EBCI"] and idata is None
    pd.testing.assert_frame_equal(results["robust EBCI"], robust_eb_intervals(d["y"], d["sigma"]))

"""Tests for hbm_lib.pooling: known answers, invariants (hypothesis) and bad input."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hbm_lib import eight_schools
from scipy import optimize, stats

from hbm_lib.pooling import (
    _cva,
    _cva_interpolated,
    _r0,
    _rho,
    _tangency,
    complete_pooling,
    estimate_tau,
    no_pooling,
    partial_pooling,
    POOLING_METHODS,
    pooling_methods,
    robust_critical_value,
    robust_eb_intervals,
    shrinkage_weight,
    worst_case_noncoverage,
)

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
# robust EBCI: the critical value cva(m2, kappa) of Armstrong, Kolesar and Plagborg-Moller (2022)

Z975 = stats.norm.ppf(0.975)


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_cva_without_bias_is_the_normal_quantile(level):
    # m2 = 0: every unit is unbiased, so the interval is the usual one
    for kappa in (1.0, 3.0, np.inf):
        assert robust_critical_value(0.0, kappa, level=level) == pytest.approx(stats.norm.ppf(0.5 + level / 2), rel=1e-12)


def test_cva_tends_to_1_96_as_the_weight_tends_to_1():
    # w -> 1 means m2 = 1/w - 1 -> 0; the critical value is continuous there
    for kappa in (1.0, 3.0, 10.0, np.inf):
        values = robust_critical_value([1e-2, 1e-4, 1e-6], kappa)
        assert np.all(np.diff(values) < 0) and values[-1] == pytest.approx(Z975, abs=1e-5)


@pytest.mark.parametrize("m2", [0.01, 0.3, 1.0, 4.0, 25.0, 400.0])
def test_cva_with_kurtosis_one_is_the_noncentral_chi_square_quantile(m2):
    # kappa = 1 forces b^2 = m2 for every unit: P(|Z + b| <= c) = 0.95 with (Z + b)^2 ~ chi2_1(m2)
    assert robust_critical_value(m2, 1.0) == pytest.approx(np.sqrt(stats.ncx2.ppf(0.95, 1, m2)), rel=1e-9)


@pytest.mark.parametrize("m2", [0.05, 0.5, 2.0, 10.0])
def test_inactive_kurtosis_bound_gives_the_second_moment_value(m2):
    # without a kurtosis bound the least favourable law is {0, t0} with kurtosis t0 / m2; any bound
    # above that leaves the answer unchanged
    free = robust_critical_value(m2, np.inf)
    t0 = float(_tangency(np.array([free]))[0])
    assert t0 > m2  # the chord regime
    assert robust_critical_value(m2, 1.001 * t0 / m2) == pytest.approx(free, rel=1e-9)
    assert robust_critical_value(m2, 0.9 * t0 / m2) < free - 1e-6  # a binding bound lowers it


def test_cva_known_values():
    # computed once with this code and checked against the linear program below; pinned here so a
    # change in the numerics is noticed (the vignette of the paper's R package shows cva(4, inf))
    assert robust_critical_value(1.0, np.inf) == pytest.approx(3.25919852, abs=1e-7)
    assert robust_critical_value(1.0, 3.0) == pytest.approx(2.81173183, abs=1e-7)
    assert robust_critical_value(4.0, np.inf) == pytest.approx(7.21635106, abs=1e-7)
    assert robust_critical_value(4.0, 3.0) == pytest.approx(4.61951272, abs=1e-7)


def _rho_linear_program(m2, kappa, chi, n=6001):
    """sup E r0(t) over distributions on a fine grid of t with E t = m2, E t^2 <= kappa m2^2."""
    t0 = float(_tangency(np.array([chi]))[0])
    top = max(4.0 * t0, 20.0 * m2, 4.0 * kappa * m2 if np.isfinite(kappa) else 0.0) + 10.0
    ts = np.unique(np.r_[np.linspace(0.0, top, n), m2])
    bound = {"A_ub": ts[None, :] ** 2, "b_ub": [kappa * m2**2]} if np.isfinite(kappa) else {}
    result = optimize.linprog(
        -_r0(ts, chi), A_eq=np.vstack([np.ones_like(ts), ts]), b_eq=[1.0, m2], bounds=(0, None), method="highs", **bound
    )
    assert result.status == 0
    return -result.fun


@pytest.mark.parametrize(
    ("m2", "kappa", "chi"),
    [(0.5, 3.0, 2.5), (1.0, 3.0, 3.0), (0.2, 5.0, 2.3), (2.0, 2.0, 3.5), (0.05, 20.0, 2.1), (0.3, 1.5, 2.4),
     (4.0, 3.0, 4.6), (1.0, np.inf, 3.0), (30.0, 4.0, 8.0)],
)
def test_rho_matches_a_linear_program(m2, kappa, chi):
    # the LP on a grid of t can only approach the supremum from below, within the grid's resolution
    # (about 1e-7 here); the closed forms and the two-point search must land within that of it
    exact = float(_rho(np.array([m2]), np.array([kappa]), np.array([chi]))[0])
    lp = _rho_linear_program(m2, kappa, chi)
    assert lp <= exact + 1e-9
    assert exact == pytest.approx(lp, abs=2e-7)


def test_cva_is_the_root_of_rho():
    m2 = np.array([0.1, 1.0, 6.0, 50.0])
    for kappa in (2.0, 3.0, 8.0, np.inf):
        chi = robust_critical_value(m2, kappa)
        np.testing.assert_allclose(_rho(m2, np.full(4, kappa), chi), 0.05, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(m2=st.floats(1e-3, 200.0), kappa=st.floats(1.0, 50.0))
def test_cva_orders(m2, kappa):
    # larger feasible sets (a larger kappa) can only raise the worst case; kappa = 3 admits the
    # normal, whose exact critical value is the parametric z sqrt(1 + m2)
    values = robust_critical_value(np.full(3, m2), [1.0, kappa, np.inf])
    assert values[0] <= values[1] * (1 + 1e-9) and values[1] <= values[2] * (1 + 1e-9)
    if kappa >= 3.0:
        assert values[1] >= Z975 * np.sqrt(1.0 + m2) * (1 - 1e-9)
    assume(m2 < 150.0)
    assert robust_critical_value(1.2 * m2, kappa) > values[1]


def test_worst_case_noncoverage_inverts_the_critical_value():
    m2 = np.array([0.0, 0.2, 1.0, 9.0])
    for kappa in (1.0, 3.0, 12.0, np.inf):
        np.testing.assert_allclose(worst_case_noncoverage(m2, kappa, robust_critical_value(m2, kappa)), 0.05, atol=1e-10)
    # kappa = 1: b^2 = m2 exactly, so the non-coverage is the non-central chi-square tail
    assert worst_case_noncoverage(2.0, 1.0, 2.5) == pytest.approx(stats.ncx2.sf(2.5**2, 1, 2.0), rel=1e-9)
    # the normal-prior (parametric) interval is exact for the normal, which has kurtosis 3: the worst
    # case with kurtosis 3 is at least 5%, and more with fatter tails allowed
    parametric = Z975 * np.sqrt(1 + m2[1:])
    worst3 = worst_case_noncoverage(m2[1:], 3.0, parametric)
    assert np.all(worst3 >= 0.05 - 1e-12) and np.all(worst_case_noncoverage(m2[1:], 10.0, parametric) > worst3)
    with pytest.raises(ValueError, match="critical_value must be positive"):
        worst_case_noncoverage(1.0, 3.0, 0.0)
    with pytest.raises(ValueError, match="must be numbers or arrays of one length"):
        worst_case_noncoverage([1.0, 2.0], 3.0, [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="kappa must be >= 1"):
        worst_case_noncoverage(1.0, 0.0, 2.0)


def test_interpolated_critical_values_are_accurate():
    # many distinct m2: a monotone interpolant through nodes 0.1 apart in log m2; its relative
    # error against the direct solution is below 1e-4 over six decades
    m2 = np.geomspace(1e-3, 1e3, 700)
    for kappa in (3.0, 8.0, np.inf):
        direct = _cva(m2, np.full_like(m2, kappa), 0.05)
        np.testing.assert_allclose(_cva_interpolated(m2, kappa, 0.05), direct, rtol=1e-4)


def test_bad_critical_value_input_raises():
    with pytest.raises(ValueError, match="m2 must be >= 0"):
        robust_critical_value(-1.0)
    with pytest.raises(ValueError, match="m2 must be finite"):
        robust_critical_value(np.nan)
    with pytest.raises(ValueError, match="kappa must be >= 1"):
        robust_critical_value(1.0, 0.5)
    with pytest.raises(ValueError, match="kappa must be one value or one per m2"):
        robust_critical_value([1.0, 2.0], [3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="level must be"):
        robust_critical_value(1.0, level=1.5)
    with pytest.raises(ValueError, match="kappa must be a number >= 1"):
        robust_critical_value(1.0, "high")
    assert isinstance(robust_critical_value(1.0), float)
    assert robust_critical_value([1.0, 2.0]).shape == (2,) and robust_critical_value(1.0, [3.0, 4.0]).shape == (2,)


# --------------------------------------------------------------------------------------------
# robust EBCI: the intervals


def test_robust_intervals_hand_computation():
    # y = (0, 4, 1, -1), se = 1: mean 1, residuals^2 = (1, 9, 0, 4), mu2 = mean(e^2 - 1) = 2.5;
    # fourth moment mean(e^4 - 6 e^2 + 3) = (1 - 6 + 3 + 81 - 54 + 3 + 3 + 16 - 24 + 3) / 4 = 6.5
    out = robust_eb_intervals([0.0, 4.0, 1.0, -1.0], [1.0] * 4)
    assert out.attrs["mu2"] == pytest.approx(2.5) and out.attrs["mu2_raw"] == pytest.approx(2.5)
    # kappa_raw = 6.5 / 2.5^2 = 1.04; the truncation is 1 + 32 * (4 * 1) / (4 * 4) / 6.25 = 2.28
    assert out.attrs["kappa_raw"] == pytest.approx(1.04)
    assert out.attrs["kappa"] == pytest.approx(1 + 32 / 4 / 6.25)
    w = 2.5 / 3.5
    np.testing.assert_allclose(out["weight"], w)
    np.testing.assert_allclose(out["estimate"], 1 + w * (np.array([0.0, 4.0, 1.0, -1.0]) - 1))
    cv = robust_critical_value(1 / 2.5, out.attrs["kappa"])
    np.testing.assert_allclose(out["upper"] - out["estimate"], cv * w, rtol=1e-12)
    np.testing.assert_allclose(out["sd"], w)


def test_robust_mu2_is_truncated_away_from_zero():
    # no spread at all: the raw second moment is -se^2 < 0; posterior mean truncation floors it
    # at 2 sum(se^4) / (n sum(se^2)) = 2 / n with equal se = 1
    out = robust_eb_intervals(np.zeros(10), np.ones(10))
    assert out.attrs["mu2_raw"] == pytest.approx(-1.0)
    assert out.attrs["mu2"] == pytest.approx(0.2)


def test_robust_intervals_become_no_pooling_as_se_vanishes():
    y = np.array([3.0, -1.0, 7.0, 2.0, 0.5])
    se = np.full(5, 1e-4)
    out = robust_eb_intervals(y, se)
    np.testing.assert_allclose(out["estimate"], y, atol=1e-6)
    np.testing.assert_allclose(out["critical_value"], Z975, atol=1e-5)


def test_robust_groups_weights_and_labels():
    y = pd.Series([1.0, 2.0, 3.0, 10.0, 12.0, 14.0], index=pd.Index(list("abcdef"), name="creator"))
    se = pd.Series(1.0, index=y.index)[::-1]  # another order: aligned by label
    out = robust_eb_intervals(y, se, groups=["g", "g", "g", "h", "h", "h"])
    assert out.index.name == "creator" and out.index.tolist() == list("abcdef")
    np.testing.assert_allclose(out["pooled_mean"], [2.0, 2.0, 2.0, 12.0, 12.0, 12.0])
    assert out["group"].tolist() == ["g"] * 3 + ["h"] * 3
    # weights move the group means: unit c carries 3 times the weight of a and b
    weighted = robust_eb_intervals(y, se, groups=["g"] * 3 + ["h"] * 3, weights=[1.0, 1.0, 3.0, 1.0, 1.0, 1.0])
    assert weighted["pooled_mean"].iloc[0] == pytest.approx((1 + 2 + 9) / 5)


def test_robust_intervals_cover_where_normal_ones_fail():
    # 20,000 units, se = 1, theta in {-d, 0, d} with P(+-d) = 0.1 and mu2 = 0.25 (kurtosis 10):
    # mass sits just beyond the parametric interval, whose average coverage is about 0.90, while
    # the robust EBCI's is at least 0.95 up to estimation error. Monte Carlo sd of a coverage
    # rate is sqrt(0.95 * 0.05 / 20000) = 0.0015: the bounds below are 3 sd and about 10 sd away
    rng = np.random.default_rng(2024)
    d = np.sqrt(0.25 / 0.1)
    theta = rng.choice([-d, 0.0, d], size=20_000, p=[0.05, 0.9, 0.05])
    y = rng.normal(theta, 1.0)
    robust = robust_eb_intervals(y, np.ones_like(y))
    normal = partial_pooling(y, np.ones_like(y))
    covered = lambda f: np.mean((f["lower"] <= theta) & (theta <= f["upper"]))  # noqa: E731
    assert covered(robust) >= 0.95 - 3 * 0.0015
    assert covered(normal) < 0.92


def test_bad_robust_input_raises():
    with pytest.raises(ValueError, match="y needs at least 3 values"):
        robust_eb_intervals([1.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="kappa must be >= 1"):
        robust_eb_intervals([1.0, 2.0, 3.0], [1.0] * 3, kappa=0.0)
    with pytest.raises(ValueError, match="weights must be positive"):
        robust_eb_intervals([1.0, 2.0, 3.0], [1.0] * 3, weights=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="weights must have one value per unit"):
        robust_eb_intervals([1.0, 2.0, 3.0], [1.0] * 3, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="se must be positive"):
        robust_eb_intervals([1.0, 2.0, 3.0], [1.0, 0.0, 1.0])


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

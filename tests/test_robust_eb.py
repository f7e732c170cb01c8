"""Tests for hbm_lib.robust_eb: the robust EBCI's critical values against their definitions and
known values, and the intervals against hand computations, limits and a coverage study."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from hbm_lib.pooling import partial_pooling
from hbm_lib.robust_eb import (
    _cva,
    _cva_interpolated,
    _r0,
    _rho,
    _tangency,
    robust_critical_value,
    robust_eb_intervals,
    worst_case_noncoverage,
)

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

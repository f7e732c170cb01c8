"""Tests for hbm_lib.staggered: known answers, dense references, Monte Carlo checks and bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from hbm_lib import staggered
from hbm_lib.staggered import pretrend_test

COLS = ["creator", "period", "outcome", "first_treated"]
NAMES = dict(unit="creator", time="period")


def imputation_estimator(panel, **kwargs):
    """The estimator on this file's column names; by default with the model-based variance for
    independent errors (``variance="unit"``, ``unit_se="iid"``), the formulas the dense reference
    writes out. The clustered defaults have tests of their own."""
    return staggered.imputation_estimator(panel, **{**NAMES, "variance": "unit", "unit_se": "iid", **kwargs})


def two_way_fixed_effects(panel, **kwargs):
    return staggered.two_way_fixed_effects(panel, **{**NAMES, **kwargs})

# --------------------------------------------------------------------------------------------
# helpers


def staggered_panel(
    seed,
    *,
    n_units=40,
    n_periods=10,
    cohorts=(3, 5, 7),
    never_share=0.25,
    effect=lambda base, h: base,
    noise=True,
    missing=0.0,
    design_seed=None,
):
    """Small staggered-adoption panel with known effects.

    The design (cohorts, unit and period effects, each unit's base effect and noise sd) is drawn
    from ``design_seed`` (default ``seed``); the noise and the missing rows from ``seed``. The
    effect of unit ``i`` at horizon ``h >= 0`` is ``effect(base_i, h)``. Returns the panel and the
    true effect per row (0 before adoption).
    """
    design = np.random.default_rng(seed if design_seed is None else design_seed)
    rng = np.random.default_rng(seed)
    n_never = round(never_share * n_units)
    ft = np.concatenate([np.full(n_never, np.nan), design.choice(cohorts, n_units - n_never)])
    alpha = design.normal(0.0, 2.0, n_units)
    lam = np.cumsum(design.normal(0.3, 1.0, n_periods))
    base = design.normal(1.0, 0.5, n_units)
    sigma = design.uniform(0.5, 1.5, n_units)
    u = np.repeat(np.arange(n_units), n_periods)
    t = np.tile(np.arange(n_periods), n_units)
    f = ft[u]
    h = t - f
    treated = ~np.isnan(f) & (h >= 0)
    tau = np.where(treated, effect(base[u], np.where(treated, h, 0)), 0.0)
    y = alpha[u] + lam[t] + tau + (rng.normal(0.0, sigma[u]) if noise else 0.0)
    panel = pd.DataFrame({"creator": [f"c{i:02d}" for i in u], "period": t, "outcome": y, "first_treated": f})
    panel["true_tau"] = tau
    if missing:
        panel = panel[rng.random(len(panel)) >= missing]
    return panel.reset_index(drop=True)


def dense_reference(panel, *, variance="pooled", pre_periods=0):
    """The estimator written out with explicit dummy matrices and dense pseudo-inverses."""
    labels, u = np.unique(panel["creator"].to_numpy(), return_inverse=True)
    periods, t = np.unique(panel["period"].to_numpy(), return_inverse=True)
    n_units, n_periods, n = len(labels), len(periods), len(panel)
    z = np.zeros((n, n_units + n_periods))
    z[np.arange(n), u] = 1.0
    z[np.arange(n), n_units + t] = 1.0
    y = panel["outcome"].to_numpy(float)
    ft = panel["first_treated"].to_numpy(float)
    rel = panel["period"].to_numpy() - ft
    treated = ~np.isnan(ft) & (rel >= 0)

    def fit(rows):
        gram_inv = np.linalg.pinv(z[rows].T @ z[rows])
        return gram_inv, gram_inv @ z[rows].T @ y[rows]

    untreated = ~treated
    gram_inv, coef = fit(untreated)
    resid = y[untreated] - z[untreated] @ coef
    leverage = np.einsum("ij,jk,ik->i", z[untreated], gram_inv, z[untreated])
    df = untreated.sum() - np.linalg.matrix_rank(z[untreated])
    sigma2 = np.full(n_units, np.sum(resid**2) / df)
    if variance == "unit":
        for i in range(n_units):
            mine = u[untreated] == i
            if mine.sum() >= 3:
                sigma2[i] = np.sum(resid[mine] ** 2) / (mine.sum() - leverage[mine].sum())

    def variance_of(w, rows_in, rows_out, g_inv):
        v = -z[rows_in] @ g_inv @ z[rows_out].T @ w
        return np.sum(w**2 * sigma2[u[rows_out]]) + np.sum(v**2 * sigma2[u[rows_in]])

    tau = y[treated] - z[treated] @ coef
    out = {
        "att": tau.mean(),
        "att_se": np.sqrt(variance_of(np.full(len(tau), 1 / len(tau)), untreated, treated, gram_inv)),
    }
    unit_rows = []
    for i in np.unique(u[treated]):
        w = (u[treated] == i) / np.sum(u[treated] == i)
        unit_rows.append((labels[i], w @ tau, np.sqrt(variance_of(w, untreated, treated, gram_inv))))
    out["units"] = pd.DataFrame(unit_rows, columns=["creator", "estimate", "se"]).set_index("creator")
    es_rows = []
    for h in np.unique(rel[treated]):
        w = (rel[treated] == h) / np.sum(rel[treated] == h)
        es_rows.append((int(h), w @ tau, np.sqrt(variance_of(w, untreated, treated, gram_inv))))
    if pre_periods:
        hold = untreated & ~np.isnan(ft) & (rel >= -pre_periods) & (rel <= -1)
        keep = untreated & ~hold
        hold &= np.isin(u, u[keep]) & np.isin(t, t[keep])
        p_inv, p_coef = fit(keep)
        placebo = y[hold] - z[hold] @ p_coef
        for h in np.unique(rel[hold]):
            w = (rel[hold] == h) / np.sum(rel[hold] == h)
            es_rows.append((int(h), w @ placebo, np.sqrt(variance_of(w, keep, hold, p_inv))))
    out["event_study"] = pd.DataFrame(es_rows, columns=["horizon", "estimate", "se"]).sort_values("horizon")
    return out


def assert_matches_reference(result, ref, atol=1e-9):
    assert result.att == pytest.approx(ref["att"], abs=atol)
    assert result.att_se == pytest.approx(ref["att_se"], abs=atol)
    units = result.units.sort_index()
    assert units.index.tolist() == ref["units"].index.tolist()
    np.testing.assert_allclose(units[["estimate", "se"]], ref["units"][["estimate", "se"]], atol=atol)
    es = result.event_study
    assert es["horizon"].tolist() == ref["event_study"]["horizon"].tolist()
    np.testing.assert_allclose(es[["estimate", "se"]], ref["event_study"][["estimate", "se"]], atol=atol)


def tiny_panel():
    # 3 creators x 4 periods: a adopts in period 2, b in period 3, c never; noise makes the fit non-trivial
    return pd.DataFrame(
        {
            "creator": ["a"] * 4 + ["b"] * 4 + ["c"] * 4,
            "period": [1, 2, 3, 4] * 3,
            "outcome": [1.0, 4.5, 5.0, 6.5, 2.0, 2.5, 6.0, 7.0, 0.5, 1.5, 1.0, 3.0],
            "first_treated": [2] * 4 + [3] * 4 + [None] * 4,
        }
    )


# --------------------------------------------------------------------------------------------
# known answers


def test_homogeneous_effect_without_noise_is_recovered_exactly():
    panel = staggered_panel(
        1, n_units=60, n_periods=12, cohorts=(3, 6, 8, 10), effect=lambda b, h: 1.7 + 0 * b, noise=False
    )
    result = imputation_estimator(panel[COLS], pre_periods=3)
    assert result.att == pytest.approx(1.7, abs=1e-9)
    post = result.event_study.query("horizon >= 0")
    pre = result.event_study.query("horizon < 0")
    np.testing.assert_allclose(post["estimate"], 1.7, atol=1e-9)
    np.testing.assert_allclose(result.units["estimate"], 1.7, atol=1e-9)
    np.testing.assert_allclose(result.observations["tau"], 1.7, atol=1e-9)
    assert pre["horizon"].tolist() == [-3, -2, -1]
    np.testing.assert_allclose(pre["estimate"], 0.0, atol=1e-9)
    # no noise: every residual and so every standard error is zero
    assert result.residual_sd == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(result.event_study["se"], 0.0, atol=1e-6)


def test_fixed_effects_are_normalised_to_the_first_period():
    panel = staggered_panel(2, noise=False)
    result = imputation_estimator(panel[COLS])
    assert result.time_effects.iloc[0] == 0.0
    assert result.time_effects.index.name == "period"
    assert result.unit_effects.index.name == "creator"
    assert result.time_effects.index.tolist() == list(range(10))
    # alpha_i + lambda_t reproduces every untreated outcome when there is no noise
    untreated = panel[panel["true_tau"] == 0]
    fitted = result.unit_effects[untreated["creator"]].to_numpy() + result.time_effects[untreated["period"]].to_numpy()
    np.testing.assert_allclose(fitted, untreated["outcome"], atol=1e-9)


def test_tiny_panel_matches_hand_and_dense_fit():
    panel = tiny_panel()
    result = imputation_estimator(panel, pre_periods=0, variance="pooled")
    # untreated cells: a at 1; b at 1, 2; c at 1..4 -- 7 cells for 3 + 4 - 1 = 6 parameters, so one
    # residual degree of freedom; the dense least-squares fit on explicit dummies is the reference
    ref = dense_reference(panel, variance="pooled")
    assert_matches_reference(result, ref)
    # a's imputed untreated outcome at period 2 is its period-1 level plus the fitted change
    obs = result.observations.set_index(["creator", "period"])
    change = result.time_effects[2] - result.time_effects[1]
    assert obs.loc[("a", 2), "y0_hat"] == pytest.approx(1.0 + change, abs=1e-12)
    assert result.units.loc["a", "n_pre"] == 1 and result.units.loc["a", "n_post"] == 3
    assert result.units["first_treated"].tolist() == [2, 3]


def test_tiny_panel_by_hand_when_the_fit_is_exact():
    # with b's pre-period lying exactly on c's trend the stage-1 fit has zero residuals and the
    # imputations can be read off: lambda = (0, 1, 0.5, 2.5) from c, alpha_a = 1, alpha_b = 2
    panel = tiny_panel()
    panel.loc[5, "outcome"] = 3.0  # b at period 2: 2 + 1
    result = imputation_estimator(panel, pre_periods=0)
    np.testing.assert_allclose(result.time_effects, [0.0, 1.0, 0.5, 2.5], atol=1e-12)
    np.testing.assert_allclose(result.unit_effects[["a", "b", "c"]], [1.0, 2.0, 0.5], atol=1e-12)
    # tau for a: (4.5 - 2, 5 - 1.5, 6.5 - 3.5) = (2.5, 3.5, 3); for b: (6 - 2.5, 7 - 4.5) = (3.5, 2.5)
    np.testing.assert_allclose(result.observations["tau"], [2.5, 3.5, 3.0, 3.5, 2.5], atol=1e-12)
    assert result.att == pytest.approx(15.0 / 5, abs=1e-12)
    np.testing.assert_allclose(result.units["estimate"], [3.0, 3.0], atol=1e-12)
    es = result.event_study.set_index("horizon")["estimate"]
    np.testing.assert_allclose(es[[0, 1, 2]], [(2.5 + 3.5) / 2, (3.5 + 2.5) / 2, 3.0], atol=1e-12)


@pytest.mark.parametrize("variance", ["unit", "pooled"])
@pytest.mark.parametrize("seed", range(6))
def test_unbalanced_panel_matches_dense_reference(seed, variance):
    panel = staggered_panel(
        seed, n_units=14, n_periods=8, cohorts=(2, 4, 5, 12), missing=0.2, effect=lambda b, h: b + 0.3 * h
    )
    result = imputation_estimator(panel[COLS], pre_periods=2, variance=variance)
    ref = dense_reference(panel, variance=variance, pre_periods=2)
    assert_matches_reference(result, ref)


def test_first_treated_accepts_nan_na_none_and_int64():
    panel = staggered_panel(3, missing=0.1)[COLS]
    expected = imputation_estimator(panel)
    as_int64 = panel.assign(first_treated=panel["first_treated"].astype("Int64"))
    as_object = panel.assign(
        first_treated=panel["first_treated"].astype(object).where(panel["first_treated"].notna(), None)
    )
    as_float_periods = panel.assign(period=panel["period"].astype(float))
    for variant in (as_int64, as_object, as_float_periods):
        got = imputation_estimator(variant)
        assert got.att == expected.att
        pd.testing.assert_frame_equal(got.units, expected.units)


def test_adoption_after_the_panel_ends_counts_as_untreated():
    panel = staggered_panel(4, noise=False)[COLS]
    late = panel.copy()
    late.loc[late["first_treated"].isna(), "first_treated"] = 99
    a, b = imputation_estimator(panel, pre_periods=0), imputation_estimator(late, pre_periods=0)
    assert a.att == pytest.approx(b.att, abs=1e-12)
    assert a.units.index.tolist() == b.units.index.tolist()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shift_seed=st.integers(0, 2**32 - 1))
def test_adding_unit_and_period_effects_changes_nothing(seed, shift_seed):
    # the fixed effects absorb any additive unit and period shift; row order does not matter either
    panel = staggered_panel(seed % 1000, n_units=12, n_periods=7, cohorts=(2, 4, 5), missing=0.1)[COLS]
    try:
        base = imputation_estimator(panel, pre_periods=2)
    except ValueError:  # a random unbalanced panel may lose a period's last untreated cell
        assume(False)
    rng = np.random.default_rng(shift_seed)
    unit_shift = dict(zip(panel["creator"].unique(), rng.normal(0, 10, panel["creator"].nunique()), strict=True))
    period_shift = rng.normal(0, 10, 7)
    shifted = panel.assign(outcome=panel["outcome"] + panel["creator"].map(unit_shift) + period_shift[panel["period"]])
    shifted = shifted.sample(frac=1.0, random_state=int(shift_seed % 2**31))
    got = imputation_estimator(shifted, pre_periods=2)
    assert got.att == pytest.approx(base.att, abs=1e-8)
    assert got.att_se == pytest.approx(base.att_se, rel=1e-7)
    cols = ["estimate", "se"]
    np.testing.assert_allclose(got.units.sort_index()[cols], base.units.sort_index()[cols], atol=1e-8)
    np.testing.assert_allclose(got.event_study[cols], base.event_study[cols], atol=1e-8)


def test_interval_uses_normal_quantile():
    result = imputation_estimator(staggered_panel(5)[COLS], level=0.9)
    z = stats.norm.ppf(0.95)
    es = result.event_study
    np.testing.assert_allclose(es["upper"] - es["estimate"], z * es["se"], rtol=1e-12)
    np.testing.assert_allclose(result.units["estimate"] - result.units["lower"], z * result.units["se"], rtol=1e-12)
    assert result.level == 0.9


def test_placebo_drops_units_left_without_untreated_cells():
    # cohort 2 has only 2 pre-periods: with pre_periods=3 all of them would be held out, so those
    # units are not in the placebo; cohort 6 units are
    panel = staggered_panel(6, n_units=30, cohorts=(2, 6), noise=False)[COLS]
    result = imputation_estimator(panel, pre_periods=3)
    pre = result.event_study.query("horizon < 0")
    n_cohort6 = panel.loc[panel["first_treated"] == 6, "creator"].nunique()
    assert pre["n_obs"].tolist() == [n_cohort6] * 3
    assert imputation_estimator(panel, pre_periods=0).event_study["horizon"].min() == 0


# --------------------------------------------------------------------------------------------
# Monte Carlo: one fixed design, the noise redrawn 300 times

N_REPS = 300
MC_DESIGN = {
    "n_units": 40,
    "n_periods": 10,
    "cohorts": (3, 5, 7),
    "effect": lambda b, h: b + 0.25 * h,
    "design_seed": 2024,
}


@pytest.fixture(scope="module")
def monte_carlo():
    rows, att = [], []
    for rep in range(N_REPS):
        panel = staggered_panel(10_000 + rep, **MC_DESIGN)
        truth = panel[panel["true_tau"] != 0].groupby("creator")["true_tau"].mean()
        att_true = panel.loc[panel["true_tau"] != 0, "true_tau"].mean()
        for variance in ("unit", "pooled"):
            result = imputation_estimator(panel[COLS], pre_periods=2, variance=variance)
            units = result.units.assign(truth=truth, rep=rep, variance=variance)
            rows.append(units.reset_index())
            att.append((rep, variance, result.att - att_true, result.att_se))
        t_units = imputation_estimator(panel[COLS], pre_periods=0, unit_interval="t").units
        rows.append(t_units.assign(truth=truth, rep=rep, variance="unit, t").reset_index())
    return pd.concat(rows, ignore_index=True), pd.DataFrame(att, columns=["rep", "variance", "error", "se"])


def test_unit_estimates_are_unbiased_in_every_cohort(monte_carlo):
    units, _ = monte_carlo
    units = units[units["variance"] == "unit"]
    per_rep = (units["estimate"] - units["truth"]).groupby([units["first_treated"], units["rep"]]).mean()
    for cohort, errors in per_rep.groupby(level=0):
        # the replications are independent, so the Monte Carlo se of the mean error is sd / sqrt(reps)
        mc_se = errors.std(ddof=1) / np.sqrt(len(errors))
        assert abs(errors.mean()) < 4 * mc_se, f"cohort {cohort}: mean error {errors.mean():.4f}, MC se {mc_se:.4f}"


def coverage_by_cohort(units):
    covered = (units["lower"] <= units["truth"]) & (units["truth"] <= units["upper"])
    # units in one replication share the fitted period effects, so the Monte Carlo se of a coverage
    # rate is taken over replications: sd of the per-replication rates / sqrt(reps)
    per_rep = covered.groupby([units["first_treated"], units["rep"]]).mean()
    return (
        per_rep.groupby(level=0)
        .agg(["mean", lambda x: x.std(ddof=1) / np.sqrt(len(x))])
        .set_axis(["rate", "mc_se"], axis=1)
    )


def test_unit_interval_coverage(monte_carlo):
    units, _ = monte_carlo
    unit_var = coverage_by_cohort(units[units["variance"] == "unit"])
    pooled = coverage_by_cohort(units[units["variance"] == "pooled"])
    # variance="unit": sigma_i^2 comes from the unit's own n_pre untreated residuals, with about
    # n_pre - 1 degrees of freedom (2, 4 and 6 for the cohorts adopting in periods 3, 5 and 7), and
    # the normal interval ignores that it is estimated, so it under-covers. Measured over the 300
    # replications: 0.847, 0.898 and 0.921 (MC se 0.005 to 0.007). This is a real shortfall, not
    # noise, so the test asserts it rather than 0.95. A t interval with n_pre - 1 df would cover
    # 0.811, 0.879 and 0.902 if the unit's own variance were the only uncertain part; the measured
    # rates are above that because part of each unit's se (its period-effect term) comes from other
    # units' variances, so the t coverage is a lower bound.
    rates = []
    for cohort, n_pre in ((3, 3), (5, 5), (7, 7)):
        t_lower = 2 * stats.t.cdf(stats.norm.ppf(0.975), n_pre - 1) - 1
        rate, mc_se = unit_var.loc[cohort]
        assert t_lower - 4 * mc_se < rate < 0.95 - 2 * mc_se, f"cohort {cohort}: coverage {rate:.3f}"
        rates.append(rate)
    assert rates == sorted(rates)  # more pre-periods, better variance estimates, better coverage
    # variance="pooled" estimates one sigma^2 from ~190 residual df. The unit sds (0.5 to 1.5)
    # differ, so quiet units over-cover and noisy ones under-cover, but averaged over a cohort's
    # units the coverage is nominal: measured 0.953, 0.938, 0.947, each within 4 MC se of 0.95.
    for cohort in (3, 5, 7):
        rate, mc_se = pooled.loc[cohort]
        assert abs(rate - 0.95) < 4 * mc_se, f"cohort {cohort}: coverage {rate:.3f}"


def test_t_intervals_restore_unit_coverage(monte_carlo):
    units, _ = monte_carlo
    normal = coverage_by_cohort(units[units["variance"] == "unit"])
    t = coverage_by_cohort(units[units["variance"] == "unit, t"])
    # unit_interval="t" uses the t quantile with each unit's Satterthwaite df (about n_pre - 1 for
    # the unit's own variance, more where other units' errors make up part of the se). Measured
    # over the 300 replications: 0.925, 0.949 and 0.948 for the cohorts with 3, 5 and 7 untreated
    # periods (normal intervals: 0.847, 0.898, 0.921), MC se 0.004 to 0.005. With 5 and 7 the
    # coverage is nominal within 4 MC se; with 3 (df about 2) the t approximation to an estimated
    # variance is not exact, but it recovers most of the shortfall.
    for cohort in (5, 7):
        rate, mc_se = t.loc[cohort]
        assert abs(rate - 0.95) < 4 * mc_se, f"cohort {cohort}: t coverage {rate:.3f}"
    rate, mc_se = t.loc[3]
    assert 0.90 < rate < 0.95 and rate > normal.loc[3, "rate"] + 10 * mc_se


def test_att_standard_error_matches_monte_carlo_sd(monte_carlo):
    _, att = monte_carlo
    for variance in ("unit", "pooled"):
        sub = att[att["variance"] == variance]
        empirical = sub["error"].std(ddof=1)
        predicted = np.sqrt(np.mean(sub["se"] ** 2))
        # with 300 independent replications the sample sd has relative se 1/sqrt(2 * 299) = 0.041;
        # the predicted value varies far less; 4 Monte Carlo se: the ratio must be within 0.16 of 1
        assert empirical / predicted == pytest.approx(1.0, abs=4 / np.sqrt(2 * (N_REPS - 1)))
        # and the ATT itself is unbiased (4 Monte Carlo se)
        assert abs(sub["error"].mean()) < 4 * empirical / np.sqrt(N_REPS)


# --------------------------------------------------------------------------------------------
# two-way fixed effects


def dense_twfe(panel, regressors):
    labels, u = np.unique(panel["creator"].to_numpy(), return_inverse=True)
    _, t = np.unique(panel["period"].to_numpy(), return_inverse=True)
    n, n_units = len(panel), len(labels)
    fe = np.zeros((n, n_units + t.max()))
    fe[np.arange(n), u] = 1.0
    later = t > 0
    fe[np.flatnonzero(later), n_units + t[later] - 1] = 1.0
    x = np.column_stack([regressors, fe])
    y = panel["outcome"].to_numpy(float)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    bread = np.linalg.pinv(x.T @ x)
    scores = np.array([x[u == i].T @ resid[u == i] for i in range(n_units)])
    k = regressors.shape[1] + t.max()  # treatment terms + period effects (unit effects nested in clusters)
    factor = n_units / (n_units - 1) * (n - 1) / (n - k)
    cov = factor * bread @ scores.T @ scores @ bread
    m = regressors.shape[1]
    return beta[:m], np.sqrt(np.diag(cov)[:m])


def test_twfe_static_matches_dense_regression_with_clustered_se():
    panel = staggered_panel(7, n_units=20, n_periods=8, cohorts=(2, 4, 6), missing=0.1, effect=lambda b, h: b + 0.3 * h)
    d = (panel["period"] >= panel["first_treated"]).to_numpy(float)[:, None]
    beta, se = dense_twfe(panel, d)
    out = two_way_fixed_effects(panel[COLS])
    assert out["term"].tolist() == ["treated"] and np.isnan(out["horizon"].iloc[0])
    assert out["estimate"].iloc[0] == pytest.approx(beta[0], abs=1e-9)
    assert out["se"].iloc[0] == pytest.approx(se[0], abs=1e-9)


def test_twfe_event_study_matches_dense_regression_with_binning():
    panel = staggered_panel(8, n_units=24, n_periods=9, cohorts=(2, 4, 6), missing=0.1, effect=lambda b, h: b + 0.3 * h)
    rel = (panel["period"] - panel["first_treated"]).to_numpy()
    # window -3..-2 and 0..3; -1 is the reference; r < -3 binned into -3, r > 3 into 3
    window = [-3, -2, 0, 1, 2, 3]
    clipped = np.clip(rel, -3, 3)
    x = np.column_stack([(clipped == r) for r in window]).astype(float)
    beta, se = dense_twfe(panel, x)
    out = two_way_fixed_effects(panel[COLS], event_study=True, pre_periods=3, post_periods=3)
    assert out["horizon"].tolist() == window
    assert out["term"].tolist() == [f"horizon_{r}" for r in window]
    np.testing.assert_allclose(out["estimate"], beta, atol=1e-9)
    np.testing.assert_allclose(out["se"], se, atol=1e-9)


def test_twfe_is_right_with_a_constant_homogeneous_effect():
    panel = staggered_panel(9, n_units=50, cohorts=(3, 5, 7), effect=lambda b, h: 1.7 + 0 * b, noise=False)[COLS]
    static = two_way_fixed_effects(panel)
    assert static["estimate"].iloc[0] == pytest.approx(1.7, abs=1e-9)
    es = two_way_fixed_effects(panel, event_study=True, pre_periods=3)
    post = es[es["horizon"] >= 0]
    assert post["horizon"].tolist() == list(range(7))  # largest horizon: cohort 3 at period 9
    np.testing.assert_allclose(post["estimate"], 1.7, atol=1e-9)
    np.testing.assert_allclose(es.loc[es["horizon"] < 0, "estimate"], 0.0, atol=1e-9)


def test_twfe_static_is_biased_when_effects_grow():
    # effects grow by 0.5 per period since adoption. Early adopters, already treated and still
    # growing, act as controls for later adopters, so their growth is subtracted: the static TWFE
    # coefficient falls below the ATT (the imputation estimator recovers it exactly without noise).
    panel = staggered_panel(
        10, n_units=60, n_periods=12, cohorts=(2, 5, 8), effect=lambda b, h: 1.0 + 0.5 * h + 0 * b, noise=False
    )
    att_true = panel.loc[panel["true_tau"] != 0, "true_tau"].mean()
    twfe = two_way_fixed_effects(panel[COLS])["estimate"].iloc[0]
    imputation = imputation_estimator(panel[COLS]).att
    assert imputation == pytest.approx(att_true, abs=1e-9)
    assert twfe < att_true - 0.5, f"TWFE {twfe:.3f} vs ATT {att_true:.3f}"


# --------------------------------------------------------------------------------------------
# bad input


def test_panel_must_be_a_dataframe_and_columns_strings():
    with pytest.raises(TypeError, match="panel must be a pandas DataFrame; got dict"):
        imputation_estimator(tiny_panel().to_dict())
    with pytest.raises(TypeError, match="unit must be a column name"):
        imputation_estimator(tiny_panel(), unit=3)


def _with(column, values, panel=None):
    panel = tiny_panel() if panel is None else panel
    return panel.assign(**{column: values})


@pytest.mark.parametrize("fn", [imputation_estimator, two_way_fixed_effects])
@pytest.mark.parametrize(
    ("panel", "match"),
    [
        (tiny_panel().drop(columns=["outcome", "period"]), r"missing column\(s\) \['period', 'outcome'\]"),
        (tiny_panel().iloc[:0], "panel is empty"),
        (
            _with("outcome", [1.0, np.nan] + [1.0] * 10),
            r"'outcome' \(the outcome\) must be finite; got nan in row 1 \(unit 'a'\)",
        ),
        (_with("outcome", [1.0] * 11 + [np.inf]), "must be finite; got inf in row 11"),
        (_with("outcome", ["x"] * 12), "must be numeric"),
        (_with("period", [1, 2, 3, 4.5] * 3), "column 'period' must hold integer-like numbers; got 4.5 in row 3"),
        (_with("period", ["1", "2", "3", "4"] * 3), "column 'period' must hold integer-like numbers; got '1' in row 0"),
        (_with("period", [1, 2, 3, None] * 3), "column 'period' has a missing value in row 3"),
        (
            _with("creator", ["a"] * 4 + ["b"] * 4 + ["c", None, "c", "c"]),
            "column 'creator' has a missing label in row 9",
        ),
        (_with("period", [1, 2, 3, 3] + [1, 2, 3, 4] * 2), r"duplicate rows for \(creator, period\) = \('a', 3\)"),
        (
            _with("first_treated", [2, 2, 3, 2] + [3] * 4 + [None] * 4),
            "'first_treated' must be constant within each unit; unit 'a' has 2 and 3",
        ),
        (_with("first_treated", [2] * 4 + [3] * 4 + [None, None, 4, None]), "unit 'c' has missing and 4"),
        (
            _with("first_treated", [2.5] * 4 + [3] * 4 + [None] * 4),
            "'first_treated' must hold integer-like numbers; got 2.5 in row 0",
        ),
        (
            _with("first_treated", ["2"] * 4 + [3] * 4 + [None] * 4),
            "'first_treated' must hold integer-like numbers; got '2'",
        ),
        (_with("first_treated", [None] * 12), "no treated observations"),
        (_with("first_treated", [9] * 4 + [9] * 4 + [None] * 4), "no treated observations"),
    ],
)
def test_bad_panels_raise(fn, panel, match):
    with pytest.raises(ValueError, match=match):
        fn(panel)


def test_unit_treated_throughout_raises():
    panel = _with("first_treated", [1] * 4 + [3] * 4 + [None] * 4)
    with pytest.raises(
        ValueError, match="unit 'a' is treated in every period it is observed; its untreated outcome cannot be imputed"
    ):
        imputation_estimator(panel)
    # a unit whose first observed row is already treated, in an unbalanced panel
    with pytest.raises(ValueError, match="unit 'a' is treated in every period"):
        imputation_estimator(tiny_panel().drop(index=[0]))


def test_period_without_untreated_observations_raises():
    # no never-treated unit and everyone adopted by period 4: period 4 has only treated cells
    panel = _with("first_treated", [2] * 4 + [3] * 4 + [4] * 4)
    with pytest.raises(ValueError, match=r"no never- or not-yet-treated observations in period\(s\) 4"):
        imputation_estimator(panel)


def test_disconnected_untreated_observations_raise():
    # c is never treated but observed only in periods 3-4; a and b are untreated only in 1-2
    panel = pd.DataFrame(
        {
            "creator": ["a"] * 4 + ["b"] * 4 + ["c", "c", "d", "d"],
            "period": [1, 2, 3, 4] * 2 + [3, 4, 3, 4],
            "outcome": np.arange(12.0),
            "first_treated": [3] * 8 + [None, None, 4, 4],
        }
    )
    with pytest.raises(ValueError, match="untreated observations do not connect all units and periods"):
        imputation_estimator(panel)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"level": 1.0}, "level must be in"),
        ({"level": "high"}, "level must be a number"),
        ({"pre_periods": -1}, "pre_periods must be a whole number >= 0; got -1"),
        ({"pre_periods": 1.5}, "pre_periods must be a whole number"),
        ({"pre_periods": True}, "pre_periods must be a whole number"),
        ({"variance": "robust"}, r"variance must be one of \('cluster', 'unit', 'pooled'\); got 'robust'"),
        ({"unit_se": "robust"}, r"unit_se must be one of \('ar1', 'iid'\)"),
        ({"cluster": 3}, r"cluster must be a column name"),
        ({"cluster": "state"}, r"missing column\(s\) \['state'\]"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        imputation_estimator(tiny_panel(), **kwargs)


def test_twfe_bad_arguments_raise():
    panel = tiny_panel()
    with pytest.raises(ValueError, match="post_periods must be a whole number"):
        two_way_fixed_effects(panel, event_study=True, post_periods=-2)
    with pytest.raises(TypeError, match="event_study must be True or False"):
        two_way_fixed_effects(panel, event_study="yes")
    with pytest.raises(ValueError, match="level must be in"):
        two_way_fixed_effects(panel, level=0)
    all_adopt = _with("first_treated", [2] * 4 + [3] * 4 + [3] * 4)
    with pytest.raises(ValueError, match="event_study=True needs never-treated units"):
        two_way_fixed_effects(all_adopt, event_study=True)
    same_time = _with("first_treated", [3] * 12)
    with pytest.raises(ValueError, match="collinear with the unit and period effects"):
        two_way_fixed_effects(same_time)


def test_no_residual_degrees_of_freedom_warns():
    # untreated cells: a at 1, b at 1..3, c at 3 -- 5 cells for 3 + 3 - 1 = 5 parameters: the
    # estimates exist, their standard errors do not
    panel = pd.DataFrame(
        {
            "creator": ["a"] * 3 + ["b"] * 3 + ["c"],
            "period": [1, 2, 3] * 2 + [3],
            "outcome": [1.0, 2.0, 5.0, 2.0, 3.5, 4.0, 1.0],
            "first_treated": [2] * 3 + [None] * 3 + [None],
        }
    )
    with pytest.warns(UserWarning, match="no residual degrees of freedom"):
        result = imputation_estimator(panel, pre_periods=0)
    assert np.isfinite(result.att) and np.isnan(result.att_se)


# --------------------------------------------------------------------------------------------
# the clustered variance of Borusyak, Jaravel and Spiess, against the reference implementations


def _ar1_panel(seed, rho=0.5, **kwargs):
    from hbm_lib.simulate import simulate_staggered_panel

    settings = dict(n_creators=100, n_periods=12, n_genres=5, adoption_periods=(4, 6, 8), noise_ar=rho, seed=seed)
    return simulate_staggered_panel(**{**settings, **kwargs})


def test_clustered_variance_equals_diff_diff_theorem_3():
    # diff-diff's ImputationDiD implements BJS Theorem 3 (non-leave-one-out, cohort x horizon
    # cells, clustered by unit): the same estimator, so the same numbers to rounding
    diff_diff = pytest.importorskip("diff_diff")
    panel, _ = _ar1_panel(5)
    ours = staggered.imputation_estimator(panel, **NAMES, pre_periods=0)
    data = panel.assign(ft=panel["first_treated"].astype(float).fillna(0).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = diff_diff.ImputationDiD().fit(data, outcome="outcome", unit="creator", time="period", first_treat="ft")
        ref_es = ref.aggregate("event_study").to_dataframe().query("not is_reference")
    assert ours.att == pytest.approx(ref.overall_att, rel=1e-8)
    assert ours.att_se == pytest.approx(ref.overall_se, rel=1e-8)
    np.testing.assert_allclose(ours.event_study["estimate"], ref_es["att"], rtol=1e-8)
    np.testing.assert_allclose(ours.event_study["se"], ref_es["se"], rtol=1e-8)


def test_clustered_variance_agrees_with_pyfixest_did2s():
    # did2s (Gardner's two-stage GMM variance) is a different formula for the same clustering:
    # measured 0.5% apart here; the bar is 10%
    pf = pytest.importorskip("pyfixest")
    panel, _ = _ar1_panel(5)
    ours = staggered.imputation_estimator(panel, **NAMES, pre_periods=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pf.did2s(panel.assign(treat=panel["treated"].astype(int)), yname="outcome",
                       first_stage="~ 0 | creator + period", second_stage="~ treat", treatment="treat", cluster="creator")
    row = ref.tidy().loc["treat"]
    assert ours.att == pytest.approx(row["Estimate"], rel=1e-6)  # their iterative solver stops at ~1e-7
    assert ours.att_se == pytest.approx(row["Std. Error"], rel=0.02)


def test_clustered_se_is_larger_than_the_iid_one_under_serial_correlation():
    panel, _ = _ar1_panel(1, rho=0.7, n_creators=300)
    clustered = staggered.imputation_estimator(panel, **NAMES, pre_periods=0)
    iid = staggered.imputation_estimator(panel, **NAMES, pre_periods=0, variance="unit", unit_se="iid")
    assert clustered.att_se > 1.3 * iid.att_se
    assert (clustered.units["se"] > iid.units["se"]).mean() > 0.9
    assert 0.5 < clustered.serial_correlation < 0.85  # the first-difference estimate of 0.7


def test_serial_correlation_estimate_is_near_zero_for_independent_errors():
    panel, _ = _ar1_panel(2, rho=0.0, n_creators=300)
    result = staggered.imputation_estimator(panel, **NAMES, pre_periods=0)
    assert abs(result.serial_correlation) < 0.1


def test_cluster_column_coarser_than_units():
    panel, _ = _ar1_panel(3)
    by_genre = staggered.imputation_estimator(panel, **NAMES, cluster="genre", pre_periods=0)
    by_unit = staggered.imputation_estimator(panel, **NAMES, pre_periods=0)
    assert by_genre.n_clusters == 5 and by_unit.n_clusters == 100
    assert by_genre.att == by_unit.att and by_genre.att_se != by_unit.att_se
    moved = panel.copy()
    moved.loc[moved.index[0], "genre"] = "genre 5"  # unit 1 in two clusters
    with pytest.raises(ValueError, match="'genre' must be constant within each unit"):
        staggered.imputation_estimator(moved, **NAMES, cluster="genre")


@pytest.mark.slow
def test_clustered_intervals_cover_under_serial_correlation():
    # 300 AR(1) panels (rho = 0.6): the clustered 95% interval of the ATT covers at about the
    # nominal rate, the one that assumes independent errors visibly less. With 300 panels a
    # coverage's Monte Carlo sd is at most 0.013; the bands below are about 3 sd wide.
    hits = {"cluster": [], "iid": []}
    for k in range(300):
        panel, truth = _ar1_panel(10_000 + k, rho=0.6)
        for name, settings in [("cluster", {}), ("iid", {"variance": "unit", "unit_se": "iid"})]:
            r = staggered.imputation_estimator(panel, **NAMES, pre_periods=0, **settings)
            hits[name].append(abs(r.att - truth.att) <= 1.96 * r.att_se)
    assert 0.91 <= np.mean(hits["cluster"]) <= 0.99
    assert np.mean(hits["iid"]) < 0.85


# --------------------------------------------------------------------------------------------
# the pre-trend test of Borusyak et al.


def test_pretrend_test_is_ols_with_leads_on_untreated_observations():
    pf = pytest.importorskip("pyfixest")
    panel, _ = _ar1_panel(5)
    test = pretrend_test(panel, **NAMES, leads=3)
    untreated = panel[~panel["treated"]].copy()
    rel = untreated["period"] - untreated["first_treated"].astype(float)
    for k in (1, 2, 3):
        untreated[f"lead{k}"] = (rel == -k).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pf.feols("outcome ~ lead1 + lead2 + lead3 | creator + period", data=untreated, vcov={"CRV1": "creator"}).tidy()
    np.testing.assert_allclose(test.leads["estimate"], ref["Estimate"], rtol=1e-8)
    np.testing.assert_allclose(test.leads["se"], ref["Std. Error"], rtol=0.01)  # CR1 factors differ by 0.1%
    assert test.df == 3 and 0 <= test.p_value <= 1


def test_pretrend_test_detects_anticipation_and_trends():
    clean, _ = _ar1_panel(6, rho=0.0, n_creators=400)
    anticipating, _ = _ar1_panel(6, rho=0.0, n_creators=400, anticipation=2.0)
    assert pretrend_test(clean, **NAMES).p_value > 0.01
    assert pretrend_test(anticipating, **NAMES).p_value < 1e-4
    with pytest.raises(ValueError, match="leads must be at least 1"):
        pretrend_test(clean, **NAMES, leads=0)
    with pytest.raises(ValueError, match="no untreated observation lies 9 period"):
        pretrend_test(clean, **NAMES, leads=9)


# --------------------------------------------------------------------------------------------
# periods and the never-treated convention


def test_periods_as_pandas_periods_give_the_same_answer():
    panel = staggered_panel(3)[COLS]
    months = panel.assign(
        period=pd.PeriodIndex.from_ordinals(panel["period"] + 600, freq="M"),
        first_treated=pd.PeriodIndex.from_ordinals(panel["first_treated"].fillna(-1).astype(int) + 600, freq="M").where(panel["first_treated"].notna()),
    )
    a = imputation_estimator(panel, pre_periods=2)
    b = imputation_estimator(months, pre_periods=2)
    assert b.att == pytest.approx(a.att, rel=1e-12)
    pd.testing.assert_frame_equal(a.event_study, b.event_study)
    assert isinstance(b.observations["period"].iloc[0], pd.Period)


def test_datetimes_and_other_never_treated_codes_get_clear_messages():
    panel = staggered_panel(3)[COLS]
    dated = panel.assign(period=pd.Timestamp("2026-01-01") + pd.to_timedelta(panel["period"] * 30, unit="D"))
    with pytest.raises(ValueError, match="holds datetimes; .*dt.to_period"):
        imputation_estimator(dated)
    with pytest.raises(ValueError, match="replace inf with NaN"):
        imputation_estimator(panel.assign(first_treated=panel["first_treated"].fillna(np.inf)))
    shifted = panel.assign(period=panel["period"] + 2001, first_treated=(panel["first_treated"] + 2001).fillna(0))
    with pytest.raises(ValueError, match="is 0 for 10 unit.*if 0 means never treated, replace it with NaN"):
        imputation_estimator(shifted)
    with pytest.raises(ValueError, match="this library codes never-treated units by a missing first_treated"):
        imputation_estimator(panel.assign(first_treated=panel["first_treated"].fillna(0)))


# --------------------------------------------------------------------------------------------
# unit degrees of freedom and t intervals


def test_unit_df_known_answers():
    # the tiny panel has one residual degree of freedom: with one pooled variance every unit's se
    # rests on it, so every unit's df is 1, and the t interval uses t(1)
    panel = tiny_panel()
    result = imputation_estimator(panel, pre_periods=0, variance="pooled", unit_interval="t")
    np.testing.assert_allclose(result.units["df"], 1.0)
    half = result.units["upper"] - result.units["estimate"]
    np.testing.assert_allclose(half, stats.t.ppf(0.975, 1) * result.units["se"], rtol=1e-12)
    assert result.unit_interval == "t"
    # own variances: a unit's df is at least its residual df (n_pre minus its leverage, < n_pre)
    # and at most the pooled one; the normal interval is the default
    big = staggered_panel(11, n_units=40, n_periods=10, cohorts=(3, 5, 7))[COLS]
    units = imputation_estimator(big, pre_periods=0).units
    assert (units["df"] > units["n_pre"] - 1.5).all()
    n_untreated = (big["period"] < big["first_treated"].fillna(np.inf)).sum()
    assert (units["df"] <= n_untreated - 40 - 10 + 1 + 1e-9).all()
    np.testing.assert_allclose(units["upper"] - units["estimate"], stats.norm.ppf(0.975) * units["se"], rtol=1e-12)
    with pytest.raises(ValueError, match=r"unit_interval must be one of \('normal', 't'\)"):
        imputation_estimator(big, unit_interval="student")


# --------------------------------------------------------------------------------------------
# the joint covariance of the unit effects


def dense_unit_covariance(panel, sigma2_by_unit):
    """v_j' diag(sigma^2) v_k with each unit's weight vector written out over all observations."""
    labels, u = np.unique(panel["creator"].to_numpy(), return_inverse=True)
    _, t = np.unique(panel["period"].to_numpy(), return_inverse=True)
    n_units, n = len(labels), len(panel)
    z = np.zeros((n, n_units + t.max() + 1))
    z[np.arange(n), u] = 1.0
    z[np.arange(n), n_units + t] = 1.0
    ft = panel["first_treated"].to_numpy(float)
    treated = ~np.isnan(ft) & (panel["period"].to_numpy() >= ft)
    gram_inv = np.linalg.pinv(z[~treated].T @ z[~treated])
    columns, names = [], []
    for i in np.unique(u[treated]):
        w = np.where(treated & (u == i), 1.0, 0.0)
        w[treated] /= w[treated].sum()
        v = w.copy()
        v[~treated] = -z[~treated] @ gram_inv @ z[treated].T @ w[treated]
        columns.append(v)
        names.append(labels[i])
    v = np.column_stack(columns)
    sigma2 = np.asarray([sigma2_by_unit[labels[i]] for i in u])
    return pd.DataFrame(v.T @ (sigma2[:, None] * v), index=names, columns=names)


@pytest.mark.parametrize("seed", range(3))
def test_unit_covariance_matches_dense_weights(seed):
    panel = staggered_panel(seed, n_units=14, n_periods=8, cohorts=(2, 4, 5), missing=0.15)
    try:
        cov = staggered.unit_covariance(panel[COLS], **NAMES, error_variance=pd.Series(1.0, index=panel["creator"].unique()))
    except ValueError:  # a random unbalanced panel may lose a period's last untreated cell
        pytest.skip("panel not imputable")
    known = pd.Series(np.linspace(0.5, 2.0, panel["creator"].nunique()), index=sorted(panel["creator"].unique()))
    cov = staggered.unit_covariance(panel[COLS], **NAMES, error_variance=known)
    ref = dense_unit_covariance(panel, known)
    np.testing.assert_allclose(cov.to_numpy(), ref.loc[cov.index, cov.index].to_numpy(), atol=1e-10)


@pytest.mark.parametrize("variance", ["unit", "pooled"])
def test_unit_covariance_diagonal_is_the_iid_se(variance):
    panel = staggered_panel(4, n_units=40, missing=0.05)[COLS]
    cov = staggered.unit_covariance(panel, **NAMES, variance=variance)
    units = imputation_estimator(panel, variance=variance, pre_periods=0).units
    assert cov.index.tolist() == units.index.tolist() == cov.columns.tolist()
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), units["se"], rtol=1e-9)
    assert np.linalg.eigvalsh(cov.to_numpy())[0] > 0
    corr = cov.to_numpy() / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    same_cohort = units["first_treated"].to_numpy()[:, None] == units["first_treated"].to_numpy()[None, :]
    off = ~np.eye(len(units), dtype=bool)
    # units treated in the same periods share the fitted period effects: positive correlation
    assert corr[same_cohort & off].min() > 0


def test_unit_covariance_bad_input():
    panel = tiny_panel()
    with pytest.raises(TypeError, match="error_variance must be a pandas Series"):
        staggered.unit_covariance(panel, **NAMES, error_variance=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="error_variance has no value for unit 'c'"):
        staggered.unit_covariance(panel, **NAMES, error_variance=pd.Series([1.0, 1.0], index=["a", "b"]))
    with pytest.raises(ValueError, match="error_variance must be positive"):
        staggered.unit_covariance(panel, **NAMES, error_variance=pd.Series([1.0, 0.0, 1.0], index=["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"variance must be one of \('unit', 'pooled'\)"):
        staggered.unit_covariance(panel, **NAMES, variance="cluster")


# --------------------------------------------------------------------------------------------
# the weights of the static TWFE coefficient


def test_twfe_weights_by_hand():
    # a adopts in 1, b in 2, periods 0-2: Dres = D - Dbar_i - Dbar_t + Dbar gives a: (-1/6, 1/3, -1/6),
    # b: (1/6, -1/3, 1/6); on the treated cells 1/3 (a, h=0), -1/6 (a, h=1), 1/6 (b, h=0), sum 1/3
    panel = pd.DataFrame({"creator": ["a"] * 3 + ["b"] * 3, "period": [0, 1, 2] * 2, "first_treated": [1] * 3 + [2] * 3})
    w = staggered.twfe_weights(panel, **NAMES)
    assert w[["first_treated", "horizon", "n_obs"]].values.tolist() == [[1, 0, 1], [1, 1, 1], [2, 0, 1]]
    np.testing.assert_allclose(w["weight"], [1.0, -0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(w["att_weight"], 1 / 3, atol=1e-12)


@pytest.mark.parametrize("missing", [0.0, 0.1])
def test_twfe_coefficient_is_the_weighted_sum_of_cell_effects(missing):
    # noise-free outcomes whose effect depends on the cohort and the horizon only (so constant in
    # each cell): the static coefficient is exactly sum(weight x cell effect), balanced or not
    def effect(base, h):
        return 1.0 + 0.4 * h + 0 * base

    panel = staggered_panel(12, n_units=50, n_periods=10, cohorts=(2, 5, 7), effect=effect, noise=False, missing=missing)
    cohort_shift = {2: 0.5, 5: 0.0, 7: -0.3}
    shift = panel["first_treated"].map(cohort_shift).fillna(0.0) * (panel["true_tau"] != 0)
    panel["outcome"] += shift
    panel["true_tau"] += shift
    w = staggered.twfe_weights(panel[COLS], **NAMES)
    cell = panel[panel["true_tau"] != 0].assign(horizon=lambda x: x["period"] - x["first_treated"])
    cell_effect = cell.groupby(["first_treated", "horizon"])["true_tau"].mean().to_numpy()
    beta = two_way_fixed_effects(panel[COLS])["estimate"].iloc[0]
    assert w["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert w["att_weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert (w["weight"] * cell_effect).sum() == pytest.approx(beta, abs=1e-9)
    # the earliest cohort's longest horizons are controls for later adopters: negative weights
    assert w.query("first_treated == 2")["weight"].iloc[-1] < 0


def test_twfe_weights_refuse_a_collinear_dummy():
    same_time = _with("first_treated", [3] * 12)
    with pytest.raises(ValueError, match="collinear with the unit and period effects"):
        staggered.twfe_weights(same_time[["creator", "period", "first_treated"]], **NAMES)


# --------------------------------------------------------------------------------------------
# stage 2: the hierarchical normal model with independent or correlated stage-1 errors

POOL_PRIORS = dict(mu_prior_sd=2.0, sigma_unit_prior=("half_normal", 1.0), sigma_group_prior=("half_normal", 1.0))


def _stage_one_like(seed, n=40, n_groups=4):
    rng = np.random.default_rng(seed)
    labels = pd.Index([f"u{i:02d}" for i in range(n)], name="creator")
    groups = pd.Series(np.arange(n) % n_groups, index=labels).map(lambda g: f"g{g}")
    theta = 1.0 + rng.normal(0, 0.4, n_groups)[np.arange(n) % n_groups] + rng.normal(0, 0.5, n)
    se = rng.uniform(0.3, 1.5, n)
    return pd.Series(theta + rng.normal(0, se), index=labels), pd.Series(se, index=labels), groups


@pytest.mark.parametrize("three_level", [True, False])
def test_pool_unit_effects_with_independent_errors_is_the_grid_posterior(three_level):
    # with a diagonal covariance the model is hierarchical_normal's, and fit(method="grid") gives its
    # exact posterior means and sds: both are quadratures, agreeing to about 1e-3 posterior sd
    from hbm_lib import fit, hierarchical_normal

    y, se, groups = _stage_one_like(1)
    g = groups if three_level else None
    pooled = staggered.pool_unit_effects(y, se=se, groups=g, **POOL_PRIORS)
    model = hierarchical_normal(y, se, groups=g, unit_dim="creator", group_dim="genre", **POOL_PRIORS)
    exact = fit(model, method="grid", seed=1, keep_log_likelihood=False)["exact_moments"]
    mean, sd = exact["theta_mean"].to_series(), exact["theta_sd"].to_series()
    assert pooled.units.index.equals(y.index)
    assert ((pooled.units["estimate"] - mean) / sd).abs().max() < 5e-3
    assert (pooled.units["sd"] / sd - 1).abs().max() < 5e-3
    # the intervals hold 95% of the exact normal mixture: they contain the mean, and sit about
    # 1.96 sds out (the mixture over sigma_unit makes the tails a little heavier)
    half = (pooled.units["upper"] - pooled.units["lower"]) / (2 * pooled.units["sd"])
    assert ((half > 1.9) & (half < 2.3)).all()
    assert list(pooled.sigma.index) == (["sigma_unit", "sigma_group"] if three_level else ["sigma_unit"])
    if three_level:
        assert pooled.groups["n_units"].tolist() == [10, 10, 10, 10]
        # the group mean's posterior mean is the mean of its units' posterior means
        by_group = pooled.units["estimate"].groupby(groups).mean()
        np.testing.assert_allclose(pooled.groups["estimate"], by_group.loc[pooled.groups.index], atol=1e-10)


def _brute_force(y, sigma, codes, n_groups, grid, prior_sd=1.0, mu_sd=2.0):
    """Posterior means and sds of theta on a fine fixed grid with dense matrices."""
    n = len(y)
    z = np.eye(n_groups)[codes]
    logp, means, second = [], [], []
    for s_u in grid:
        for s_g in grid:
            su2, sg2 = np.exp(2 * s_u), np.exp(2 * s_g)
            k = su2 * np.eye(n) + sg2 * z @ z.T + mu_sd**2
            total = k + sigma
            inv = np.linalg.inv(total)
            _, logdet = np.linalg.slogdet(total)
            lp = -0.5 * (logdet + y @ inv @ y) + stats.halfnorm.logpdf(np.exp(s_u), scale=prior_sd) + s_u
            lp += stats.halfnorm.logpdf(np.exp(s_g), scale=prior_sd) + s_g
            m = k @ inv @ y
            v = np.diag(k - k @ inv @ k)
            logp.append(lp)
            means.append(m)
            second.append(v + m**2)
    w = np.exp(np.array(logp) - max(logp))
    w /= w.sum()
    mean = w @ np.array(means)
    return mean, np.sqrt(w @ np.array(second) - mean**2)


def test_pool_unit_effects_with_correlated_errors_matches_brute_force():
    # a full covariance (a common component per "cohort" plus independent parts): the eigenbasis and
    # Woodbury computation against dense inverses on a fixed 120 x 120 grid of log sigmas
    rng = np.random.default_rng(3)
    n, n_groups = 8, 2
    codes = np.arange(n) % n_groups
    cohort = np.arange(n) // 4
    sigma = np.diag(rng.uniform(0.2, 1.0, n)) + 0.3 * (cohort[:, None] == cohort[None, :])
    y = rng.normal(1.0, 1.0, n)
    pooled = staggered.pool_unit_effects(y, cov=sigma, groups=codes, **POOL_PRIORS)
    mean, sd = _brute_force(y, sigma, codes, n_groups, np.linspace(-9.0, 2.5, 120))
    np.testing.assert_allclose(pooled.units["estimate"], mean, atol=3e-3 * sd.min())
    np.testing.assert_allclose(pooled.units["sd"], sd, rtol=3e-3)


def test_pool_unit_effects_correlation_changes_the_answer_and_labels_align():
    y, se, groups = _stage_one_like(2, n=12, n_groups=3)
    cov = pd.DataFrame(np.diag(se**2) + 0.2, index=y.index, columns=y.index)
    a = staggered.pool_unit_effects(y, cov=cov, groups=groups, **POOL_PRIORS)
    b = staggered.pool_unit_effects(y, se=se, groups=groups, **POOL_PRIORS)
    # a shared error moves every estimate together: the group means are less certain
    assert (a.groups["sd"] > b.groups["sd"]).all()
    # inputs in another order are paired by label; results keep the estimates' order
    order = y.index[::-1]
    c = staggered.pool_unit_effects(y, cov=cov.loc[order, order], groups=groups.loc[order], **POOL_PRIORS)
    pd.testing.assert_frame_equal(a.units, c.units)
    # a weighted average equal to one group's indicator is that group's mean
    weights = {"g1 only": (groups == "g1").astype(float)}
    d = staggered.pool_unit_effects(y, cov=cov, groups=groups, averages=weights, **POOL_PRIORS)
    np.testing.assert_allclose(d.averages.loc["g1 only"], d.groups.loc["g1", ["estimate", "sd", "lower", "upper"]], atol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of se"),
        ({"se": [1.0] * 4, "cov": np.eye(4)}, "exactly one of se"),
        ({"se": [1.0, 1.0, 0.0, 1.0]}, "se must be positive; got 0 at position 2"),
        ({"se": [1.0] * 3}, "se must have one value per unit: expected 4, got 3"),
        ({"cov": np.eye(3)}, r"cov must be 4 x 4"),
        ({"cov": np.eye(4) + np.triu(np.ones((4, 4)), 1)}, "cov must be symmetric"),
        ({"cov": np.ones((4, 4)) - 2 * np.eye(4)}, "positive diagonal"),
        ({"cov": np.array([[1.0, 2, 0, 0], [2, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])}, "positive semi-definite"),
        ({"se": [1.0] * 4, "groups": ["a"] * 4}, "at least two distinct labels"),
        ({"se": [1.0] * 4, "averages": {"x": [1.0, -1.0, 0.0, 0.0]}}, "non-negative weights"),
        ({"se": [1.0] * 4, "sigma_unit_prior": ("gamma", 1.0)}, "unknown family"),
        ({"se": [1.0] * 4, "level": 1.5}, "level must be in"),
    ],
)
def test_pool_unit_effects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        staggered.pool_unit_effects([1.0, 2.0, 0.5, 1.5], **kwargs)


def test_unit_df_with_ar1_standard_errors():
    # unit_se="ar1" (the default) corrects each unit's residual degrees of freedom for the
    # autocorrelation; with independent errors (rho estimated at 0.02 here) the correction is small,
    # so the df stay near the independent-errors ones: measured median ratio 1.04, smallest 0.99.
    # Larger ratios (up to 1.7) come from units whose own-variance part is small, where the
    # Satterthwaite factor (se^2 / own)^2 amplifies the two formulas' different other-unit parts
    # and the df are large anyway.
    panel, _ = _ar1_panel(4, rho=0.0)
    ar1 = staggered.imputation_estimator(panel, **NAMES, pre_periods=0, unit_interval="t").units
    iid = staggered.imputation_estimator(panel, **NAMES, pre_periods=0, unit_se="iid").units
    ratio = ar1["df"] / iid["df"]
    assert 0.95 < ratio.median() < 1.1 and ratio.min() > 0.9
    assert (ratio[iid["df"] < 10] < 1.3).all()
    np.testing.assert_allclose(ar1["upper"] - ar1["estimate"], stats.t.ppf(0.975, ar1["df"]) * ar1["se"], rtol=1e-12)

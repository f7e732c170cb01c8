"""Tests for hbm_lib.simulate: the simulation is seeded and honest, the summaries are right."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hbm_lib.simulate import (
    StaggeredTruth,
    simulate_creator_experiments,
    simulate_creator_summaries,
    simulate_staggered_panel,
)
from hbm_lib.estimates import difference_in_means


def summarize_experiments(users):
    return difference_in_means(users, unit="creator", treated="treated", outcome="revenue", groups="genre")


@pytest.fixture(scope="module")
def default_sim():
    return simulate_creator_experiments(seed=3)


def test_same_seed_same_data(default_sim):
    users, truth = simulate_creator_experiments(seed=3)
    pd.testing.assert_frame_equal(users, default_sim[0])
    pd.testing.assert_frame_equal(truth.creators, default_sim[1].creators)
    other, _ = simulate_creator_experiments(seed=4)
    assert not other["revenue"].equals(users["revenue"])


def test_shapes_and_design(default_sim):
    users, truth = default_sim
    assert len(truth.creators) == 500 and len(truth.genres) == 5
    assert truth.creators["genre"].value_counts().tolist() == [100] * 5
    n = truth.creators["n_users"]
    assert n.min() >= 30 and n.max() <= 5000
    assert len(users) == n.sum()
    # log-uniform sizes: about half the creators below the geometric midpoint sqrt(30 * 5000) = 387
    share_small = np.mean(n < np.sqrt(30 * 5000))
    assert 0.4 < share_small < 0.6  # binomial sd over 500 creators is 0.022
    # arms split evenly within one user
    arms = users.groupby("creator")["treated"].agg(["sum", "count"])
    assert (np.abs(arms["sum"] - arms["count"] / 2) <= 1).all()


def test_revenue_is_skewed_with_many_zeros(default_sim):
    users, _ = default_sim
    revenue = users["revenue"]
    assert (revenue >= 0).all()
    assert 0.75 < np.mean(revenue == 0) < 0.85  # buy_prob 0.2
    assert revenue.max() > 20 * revenue.mean()  # a long right tail


def test_treatment_raises_expected_revenue_by_the_true_effect():
    # one creator with many users: the difference in means estimates the effect without bias;
    # with 400,000 users the se is about 0.015, so 0.06 is 4 se
    users, truth = simulate_creator_experiments(
        2, 1, min_users=400_000, max_users=400_000, sigma_creator=0.0, genre_effects=[0.5], seed=9
    )
    summary = summarize_experiments(users)
    np.testing.assert_allclose(summary["estimate"], truth.creators["effect"], atol=4 * summary["se"].max())
    assert truth.creators["effect"].tolist() == [0.5, 0.5]


def test_estimates_are_unbiased_and_se_calibrated(default_sim):
    users, truth = default_sim
    summary = summarize_experiments(users)
    z = (summary["estimate"] - truth.effect.reindex(summary.index)) / summary["se"]
    # 500 independent z-scores: their mean has sd 1/sqrt(500) = 0.045, their sd is within ~0.1 of 1
    assert abs(z.mean()) < 4 / np.sqrt(500)
    assert 0.85 < z.std() < 1.15


def test_per_genre_sigma_creator():
    _, truth = simulate_creator_experiments(1000, 2, sigma_creator=[0.05, 1.0], max_users=40, seed=2)
    spread = truth.creators.groupby("genre")["effect"].std()
    # 500 creators per genre: the sample sd is within 10% of the true one with overwhelming probability
    assert spread.iloc[0] == pytest.approx(0.05, rel=0.1)
    assert spread.iloc[1] == pytest.approx(1.0, rel=0.1)
    assert truth.params["sigma_creator"] == [0.05, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_creators": 1}, "n_creators must be at least 2"),
        ({"n_genres": 0}, "n_genres must be at least 1"),
        ({"n_creators": 3, "n_genres": 4}, "must not exceed"),
        ({"min_users": 2}, "min_users must be at least 4"),
        ({"min_users": 100, "max_users": 50}, "max_users must be at least 100"),
        ({"sigma_creator": -1.0}, "sigma_creator must be one value >= 0"),
        ({"treated_share": 1.0}, "treated_share must be in"),
        ({"genre_effects": [1.0, 2.0]}, "genre_effects must hold 5"),
        ({"n_creators": 2.5}, "n_creators must be an integer"),
        ({"sigma_creator": [0.1, 0.2]}, "or one per genre"),
        ({"sigma_creator": [0.1, 0.2, 0.1, 0.1, -0.1]}, "sigma_creator must be one value >= 0"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
    ],
)
def test_simulate_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_creator_experiments(**kwargs)


def test_summaries_match_user_level_simulation():
    # same seed, same creators and truth; the direct summaries' se is the exact sampling sd, which
    # the Welch se estimates: over 500 creators their ratio averages 1 to within a few percent
    users, truth = simulate_creator_experiments(seed=5)
    direct, direct_truth = simulate_creator_summaries(seed=5)
    pd.testing.assert_frame_equal(truth.creators, direct_truth.creators)
    welch = summarize_experiments(users)
    ratio = welch["se"].to_numpy() / direct["se"].to_numpy()
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    assert direct.index.equals(welch.index) and list(direct.columns) == list(welch.columns[[0, 1, 2, 3, 6, 7]])
    z = (direct["estimate"] - direct_truth.effect) / direct["se"]
    assert abs(z.mean()) < 4 / np.sqrt(500) and 0.9 < z.std() < 1.1


def test_summaries_scale_and_reject_treated_share():
    summaries, _ = simulate_creator_summaries(200_000, seed=1)
    assert len(summaries) == 200_000 and (summaries["se"] > 0).all()
    with pytest.raises(ValueError, match="treated_share"):
        simulate_creator_summaries(treated_share=0.3)
    with pytest.raises(TypeError, match="unknown option 'sigma_creatr'; did you mean 'sigma_creator'"):
        simulate_creator_summaries(sigma_creatr=0.3)


def test_student_t_effects_keep_the_sd_and_fatten_the_tails():
    # scaled t with 5 df has sd 1; P(|e| > 3) = 2 P(T_5 > 3 / sqrt(3 / 5)) = 0.0118 against 0.0027
    # for the normal. 20,000 creators: the binomial sd of that share is 0.00076, of the sd about 0.009
    sims = {dist: simulate_creator_summaries(20_000, 1, sigma_creator=0.5, effect_dist=dist, effect_df=5.0,
                                             genre_effects=[2.0], seed=8)[1]
            for dist in ("normal", "student_t")}
    for dist, truth in sims.items():
        e = (truth.creators["effect"] - 2.0) / 0.5
        assert e.std() == pytest.approx(1.0, abs=0.04)
        expected = 2 * stats.t.sf(3 / np.sqrt(3 / 5), 5) if dist == "student_t" else 2 * stats.norm.sf(3)
        assert np.mean(np.abs(e) > 3) == pytest.approx(expected, abs=4 * np.sqrt(expected / 20_000))
    assert sims["student_t"].params["effect_dist"] == "student_t" and sims["student_t"].params["effect_df"] == 5.0
    # the normal default draws the same effects as before the option existed: shape * sd + mean
    _, truth = simulate_creator_experiments(seed=500)
    assert truth.creators["effect"].iloc[0] == pytest.approx(0.667869, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"effect_dist": "cauchy"}, "effect_dist must be one of"),
        ({"effect_dist": "student_t", "effect_df": 2.0}, "effect_df must be > 2"),
        ({"sampling": "poisson"}, "sampling must be 'normal' or 'exact'"),
    ],
)
def test_summaries_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_creator_summaries(**kwargs)


def test_exact_summaries_are_the_user_level_estimator_in_distribution():
    # sampling="exact" draws buyers and their spend instead of users: the estimate is the difference
    # in means and se the Welch se, as difference_in_means gives on user rows. Same seed, same
    # creators (the truth is drawn first). 2000 creators of 40-60 users, where skewness and the
    # noise in the Welch se are strong.
    design = dict(n_creators=2000, n_genres=2, min_users=40, max_users=60, seed=12)
    exact, truth = simulate_creator_summaries(sampling="exact", **design)
    normal, normal_truth = simulate_creator_summaries(**design)
    pd.testing.assert_frame_equal(truth.creators, normal_truth.creators)
    users, user_truth = simulate_creator_experiments(**design)
    welch = summarize_experiments(users)
    assert list(exact.columns) == list(welch.columns) and exact.index.equals(welch.index)
    true_var = normal["se"].to_numpy() ** 2  # the exact sampling variance of each estimate
    for summary in (exact, welch):
        # the sample variances are unbiased: E[se^2] = true variance. The ratio se^2 / var has sd
        # about 0.5 per creator here (measured), so its mean over 2000 has sd 0.011; 0.05 is 4.5 sd
        assert np.mean(summary["se"].to_numpy() ** 2 / true_var) == pytest.approx(1.0, abs=0.05)
        # errors against the truth: mean 0 (sd 1/sqrt(2000) = 0.022 in units of the true se) and
        # variance 1 (sd of a sample variance of 2000 roughly normal values: 0.032)
        z = (summary["estimate"].to_numpy() - truth.creators["effect"].to_numpy()) / np.sqrt(true_var)
        assert abs(z.mean()) < 0.1 and z.var() == pytest.approx(1.0, abs=0.13)
    # and the t-statistics with the estimated se are equally heavy-tailed in both: the share beyond
    # 2 differs by less than 4 binomial sds of a difference (sd 0.0071 at a share of about 0.05)
    t_exact = np.abs(exact["estimate"] - truth.effect) / exact["se"]
    t_users = np.abs(welch["estimate"] - user_truth.effect) / welch["se"]
    assert abs(np.mean(t_exact > 2) - np.mean(t_users > 2)) < 4 * 0.0071


def test_exact_summaries_refuse_a_creator_without_buyers():
    with pytest.raises(ValueError, match="no buyer in either arm"):
        simulate_creator_summaries(50, 1, sampling="exact", min_users=4, max_users=4, buy_prob=0.01, seed=1)


# --- staggered-adoption panel -------------------------------------------------------------------


@pytest.fixture(scope="module")
def staggered_sim():
    return simulate_staggered_panel(seed=11)


def _untreated_residual(panel, truth):
    """outcome minus the creator level and the treatment effect: period effects plus noise."""
    pre_mean = panel["creator"].map(truth.creators.set_index("creator")["pre_mean"])
    tau = panel.merge(truth.observations, on=["creator", "period"], how="left")["effect"].fillna(0.0)
    return panel["outcome"] - pre_mean - tau.to_numpy()


def test_staggered_shapes_columns_and_dtypes(staggered_sim):
    panel, truth = staggered_sim
    assert isinstance(truth, StaggeredTruth)
    assert list(panel.columns) == ["creator", "period", "genre", "size", "first_treated", "treated", "outcome"]
    assert len(panel) == 200 * 24
    assert str(panel["first_treated"].dtype) == "Int64" and str(truth.creators["first_treated"].dtype) == "Int64"
    assert panel["treated"].dtype == bool and panel["outcome"].dtype == np.float64
    assert panel["period"].dtype == np.int64 and panel["size"].dtype == np.int64
    assert np.isfinite(panel["outcome"]).all()
    # sorted by creator then period, creators in the truth's order
    assert panel["period"].tolist() == list(range(24)) * 200
    assert panel["creator"].iloc[::24].tolist() == truth.creators["creator"].tolist()
    assert truth.creators["creator"].iloc[0] == "creator 001" and truth.genres["genre"].tolist() == [f"genre {k}" for k in range(1, 6)]
    assert truth.creators["genre"].value_counts().tolist() == [40] * 5
    assert list(truth.creators.columns) == ["creator", "genre", "size", "first_treated", "n_post", "base_effect", "effect", "pre_mean"]
    assert list(truth.by_horizon.columns) == ["horizon", "effect", "n_obs"]
    assert list(truth.observations.columns) == ["creator", "period", "horizon", "effect"]
    size = truth.creators["size"]
    assert size.min() >= 30 and size.max() <= 3000
    # per-creator columns repeat the truth's
    first_rows = panel.iloc[::24].reset_index(drop=True)
    pd.testing.assert_series_equal(first_rows["first_treated"], truth.creators["first_treated"])
    pd.testing.assert_series_equal(first_rows["size"], truth.creators["size"])
    assert (panel.groupby("creator")[["genre", "size", "first_treated"]].nunique(dropna=False) == 1).all().all()


def test_staggered_same_seed_same_data(staggered_sim):
    panel, truth = simulate_staggered_panel(seed=11)
    pd.testing.assert_frame_equal(panel, staggered_sim[0])
    pd.testing.assert_frame_equal(truth.creators, staggered_sim[1].creators)
    pd.testing.assert_frame_equal(truth.observations, staggered_sim[1].observations)
    from_generator, _ = simulate_staggered_panel(seed=np.random.default_rng(11))
    pd.testing.assert_frame_equal(from_generator, panel)
    other, _ = simulate_staggered_panel(seed=12)
    assert not other["outcome"].equals(panel["outcome"])


def test_staggered_cohorts_and_never_treated():
    _, truth = simulate_staggered_panel(2000, seed=5)
    first = truth.creators["first_treated"]
    assert first.isna().sum() == 500  # exactly round(0.25 * 2000)
    treated = first.dropna().astype(int)
    assert set(treated) == {6, 10, 14, 18}
    # each of 1500 treated creators picks a cohort with p = 1/4: binomial sd of a share is
    # sqrt(0.25 * 0.75 / 1500) = 0.011, so 0.045 is 4 sd
    shares = treated.value_counts(normalize=True)
    assert (np.abs(shares - 0.25) < 0.045).all()
    # timing is independent of size: log-size is uniform with sd log(100) / sqrt(12) = 1.33, so the
    # difference of mean log-size between 500 never-treated and 1500 treated has sd 0.069; 4 sd = 0.28
    log_size = np.log(truth.creators["size"])
    assert abs(log_size[first.isna()].mean() - log_size[first.notna()].mean()) < 0.28
    # and of genre: each genre's 400 creators hold about 100 never-treated (sd about 8.7 given the
    # hypergeometric draw); 4 sd is 35
    never_by_genre = truth.creators[first.isna()].groupby("genre").size()
    assert (np.abs(never_by_genre - 100) < 35).all()
    # rounding and edge cases: no never-treated; cohorts at the first and last allowed periods
    _, none_never = simulate_staggered_panel(10, 5, 1, adoption_periods=(1, 4), never_treated_share=0.0, seed=1)
    assert none_never.creators["first_treated"].notna().all()
    assert set(none_never.creators["n_post"]) <= {1, 4}


def test_staggered_treated_matches_first_treated(staggered_sim):
    panel, truth = staggered_sim
    first = panel["first_treated"]
    expected = (panel["period"] >= first).fillna(False).astype(bool)
    assert panel["treated"].equals(expected)
    assert not panel.loc[first.isna(), "treated"].any()
    n_post = panel.groupby("creator", sort=False)["treated"].sum().to_numpy()
    np.testing.assert_array_equal(n_post, truth.creators["n_post"])
    ever = truth.creators["first_treated"].notna()
    np.testing.assert_array_equal(truth.creators.loc[ever, "n_post"], 24 - truth.creators.loc[ever, "first_treated"].astype(int))
    # the observations are exactly the treated rows, in panel order
    treated_rows = panel.loc[panel["treated"], ["creator", "period"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(truth.observations[["creator", "period"]], treated_rows)


def test_staggered_truth_is_consistent(staggered_sim):
    _, truth = staggered_sim
    obs, creators = truth.observations, truth.creators
    assert truth.att == pytest.approx(obs["effect"].mean(), rel=1e-12)
    expected = obs.groupby("horizon")["effect"].agg(effect="mean", n_obs="size").reset_index()
    pd.testing.assert_frame_equal(truth.by_horizon, expected, check_dtype=False)
    assert truth.by_horizon["horizon"].tolist() == list(range(24 - 6))
    per_creator = obs.groupby("creator", sort=False)["effect"].mean()
    ever = creators["first_treated"].notna()
    np.testing.assert_allclose(creators.loc[ever, "effect"], per_creator.reindex(creators.loc[ever, "creator"]), rtol=1e-12)
    assert creators.loc[~ever, "effect"].isna().all() and (creators.loc[~ever, "n_post"] == 0).all()
    mean_horizon = obs.groupby("creator", sort=False)["horizon"].mean().reindex(creators.loc[ever, "creator"])
    np.testing.assert_allclose(creators.loc[ever, "effect"], creators.loc[ever, "base_effect"] + 0.05 * mean_horizon.to_numpy(), rtol=1e-12)
    # tau_it = base_effect_i + growth * horizon, row by row
    base = obs["creator"].map(creators.set_index("creator")["base_effect"])
    np.testing.assert_allclose(obs["effect"], base + 0.05 * obs["horizon"], rtol=1e-12)
    assert (obs["horizon"] == obs["period"] - obs["creator"].map(creators.set_index("creator")["first_treated"]).astype(int)).all()
    assert truth.periods["effect"].mean() == pytest.approx(0.0, abs=1e-12)
    assert truth.params["growth"] == 0.05 and truth.params["adoption_periods"] == [6, 10, 14, 18]


def test_staggered_without_spread_effects_are_known():
    # no genre or creator spread: every base effect is mu and the effect at horizon h is mu + growth * h
    _, truth = simulate_staggered_panel(50, 10, 2, adoption_periods=(2, 7), mu=0.4, sigma_genre=0.0, sigma_creator=0.0, growth=0.1, seed=3)
    np.testing.assert_allclose(truth.creators["base_effect"], 0.4)
    np.testing.assert_allclose(truth.genres["effect"], 0.4)
    np.testing.assert_allclose(truth.by_horizon["effect"], 0.4 + 0.1 * truth.by_horizon["horizon"])
    ever = truth.creators["first_treated"].notna()
    np.testing.assert_allclose(truth.creators.loc[ever, "effect"], 0.4 + 0.1 * (truth.creators.loc[ever, "n_post"] - 1) / 2)


def test_staggered_outcome_is_level_plus_period_plus_effect():
    # with the noise 1e-9 the outcome is its systematic part to within 1e-7 (noise sd at most
    # 1e-9 * sqrt(300 / 30) = 3.2e-9 per row); without period effects, outcome - pre_mean = tau * treated
    panel, truth = simulate_staggered_panel(60, 12, 3, adoption_periods=(3, 8), period_sd=0.0, noise_sd=1e-9, seed=4)
    np.testing.assert_allclose(_untreated_residual(panel, truth), 0.0, atol=1e-7)
    # with period effects, the residual is the same period effect for every creator
    panel, truth = simulate_staggered_panel(60, 12, 3, adoption_periods=(3, 8), period_sd=1.5, noise_sd=1e-9, seed=4)
    residual = _untreated_residual(panel, truth).to_numpy().reshape(60, 12)
    np.testing.assert_allclose(residual, np.broadcast_to(truth.periods["effect"].to_numpy(), (60, 12)), atol=1e-7)
    assert truth.periods["effect"].std() > 0.5  # the period effects are really there


def test_staggered_noise_scales_with_size():
    panel, truth = simulate_staggered_panel(400, 24, period_sd=0.0, noise_sd=2.0, seed=8)
    noise = _untreated_residual(panel, truth).to_numpy()
    ratio = np.sqrt(truth.params["median_size"] / panel["size"].to_numpy())
    assert truth.params["median_size"] == pytest.approx(np.sqrt(30 * 3000))
    z = noise / (2.0 * ratio)
    small = panel["size"].to_numpy() < truth.params["median_size"]
    # standardized noise is N(0, 1) in both halves: about 4800 draws each, so the sample sd has
    # sd 1 / sqrt(2 * 4800) = 0.010 and its mean sd 0.014; 0.05 is 5 and 3.5 sd
    for half in (small, ~small):
        assert half.sum() > 3000
        assert z[half].std() == pytest.approx(1.0, abs=0.05)
        assert abs(z[half].mean()) < 0.06
    # unstandardized, small creators are much noisier (expected ratio of sds ~ 3)
    assert noise[small].std() > 2 * noise[~small].std()


def test_staggered_violations_change_only_documented_cells():
    kwargs = {"n_creators": 40, "n_periods": 12, "n_genres": 2, "adoption_periods": (4, 9), "seed": 6}
    base_panel, base_truth = simulate_staggered_panel(**kwargs)
    ever = base_panel["first_treated"].notna().to_numpy()
    # trend_violation: + trend_violation * t for creators that adopt, in every period; nothing else
    panel, truth = simulate_staggered_panel(**kwargs, trend_violation=0.3)
    diff = (panel["outcome"] - base_panel["outcome"]).to_numpy()
    np.testing.assert_allclose(diff, np.where(ever, 0.3 * panel["period"], 0.0), atol=1e-12)
    pd.testing.assert_frame_equal(panel.drop(columns="outcome"), base_panel.drop(columns="outcome"))
    pd.testing.assert_frame_equal(truth.observations, base_truth.observations)
    assert truth.att == base_truth.att
    # anticipation: + anticipation in the single period before adoption; the truth is unchanged
    panel, truth = simulate_staggered_panel(**kwargs, anticipation=0.7)
    diff = (panel["outcome"] - base_panel["outcome"]).to_numpy()
    just_before = (panel["period"] == panel["first_treated"] - 1).fillna(False).to_numpy(dtype=bool)
    assert just_before.sum() == ever.sum() // 12  # one row per adopting creator
    np.testing.assert_allclose(diff, np.where(just_before, 0.7, 0.0), atol=1e-12)
    pd.testing.assert_frame_equal(truth.creators, base_truth.creators)
    pd.testing.assert_frame_equal(truth.by_horizon, base_truth.by_horizon)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_creators": 1}, "n_creators must be at least 2"),
        ({"n_creators": 2.5}, "n_creators must be an integer"),
        ({"n_periods": 1}, "n_periods must be at least 2"),
        ({"n_genres": 0}, "n_genres must be at least 1"),
        ({"n_creators": 3, "n_genres": 4}, "n_genres must not exceed"),
        ({"adoption_periods": ()}, "adoption_periods must be a non-empty"),
        ({"adoption_periods": (6, 6)}, "adoption_periods must be unique"),
        ({"adoption_periods": (0, 6)}, "adoption_periods must lie in"),
        ({"adoption_periods": (6, 24)}, "adoption_periods must lie in"),
        ({"adoption_periods": (6.5,)}, "adoption_periods must hold integers"),
        ({"adoption_periods": "6"}, "adoption_periods must be a sequence"),
        ({"never_treated_share": 1.0}, "never_treated_share must be in"),
        ({"never_treated_share": -0.1}, "never_treated_share must be finite and >= 0"),
        ({"n_creators": 4, "n_genres": 1, "never_treated_share": 0.9}, "never_treated_share leaves no treated"),
        ({"mu": np.nan}, "mu must be finite"),
        ({"growth": "fast"}, "growth must be a number"),
        ({"sigma_genre": -1.0}, "sigma_genre must be finite and >= 0"),
        ({"sigma_creator": -0.1}, "sigma_creator must be finite and >= 0"),
        ({"level_mean": np.inf}, "level_mean must be finite"),
        ({"level_sd": -1.0}, "level_sd must be finite and >= 0"),
        ({"period_sd": -1.0}, "period_sd must be finite and >= 0"),
        ({"noise_sd": 0.0}, "noise_sd must be positive"),
        ({"min_size": 0}, "min_size must be at least 1"),
        ({"min_size": 100, "max_size": 50}, "max_size must be at least 100"),
        ({"trend_violation": np.nan}, "trend_violation must be finite"),
        ({"anticipation": None}, "anticipation must be a number"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_staggered_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_staggered_panel(**kwargs)

"""Tests for hbm_lib.simulate: the simulation is seeded and honest, the summaries are right."""

import numpy as np
import pandas as pd
import pytest

from hbm_lib.simulate import simulate_creator_experiments, simulate_creator_summaries, summarize_experiments


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
    np.testing.assert_allclose(summary["effect"], truth.creators["effect"], atol=4 * summary["se"].max())
    assert truth.creators["effect"].tolist() == [0.5, 0.5]


def test_estimates_are_unbiased_and_se_calibrated(default_sim):
    users, truth = default_sim
    summary = summarize_experiments(users).merge(truth.creators[["creator", "effect"]], on="creator", suffixes=("", "_true"))
    z = (summary["effect"] - summary["effect_true"]) / summary["se"]
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


def test_summary_matches_hand_computation():
    users = pd.DataFrame(
        {
            "creator": ["a"] * 5 + ["b"] * 4,
            "genre": ["g"] * 5 + ["h"] * 4,
            "treated": [0, 0, 1, 1, 1, 0, 1, 0, 1],
            "revenue": [1.0, 3.0, 2.0, 4.0, 9.0, 0.0, 0.0, 2.0, 6.0],
        }
    )
    out = summarize_experiments(users)
    assert out["creator"].tolist() == ["a", "b"]
    assert out["genre"].tolist() == ["g", "h"]
    a = out.iloc[0]
    assert (a["n_control"], a["n_treated"]) == (2, 3)
    assert a["effect"] == pytest.approx(5.0 - 2.0)
    assert a["se"] == pytest.approx(np.sqrt(np.var([2, 4, 9], ddof=1) / 3 + np.var([1, 3], ddof=1) / 2))


@pytest.mark.parametrize(
    ("users", "kwargs", "match"),
    [
        (pd.DataFrame({"creator": ["a"] * 3, "treated": [0, 0, 1], "revenue": [1.0, 2.0, 3.0]}), {"genre": None}, "empty or single-user arm"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 0, 0], "revenue": [1.0, 2.0, 3.0, 4.0]}), {"genre": None}, "empty or single-user arm"),
        (pd.DataFrame({"creator": ["a"], "revenue": [1.0]}), {"genre": None}, "missing column"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 2], "revenue": [1.0] * 4}), {"genre": None}, "treated must be 0 or 1"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 1], "revenue": [1.0, np.nan, 1.0, 2.0]}), {"genre": None}, "revenue must be finite"),
        (pd.DataFrame({"creator": ["a"] * 4, "genre": ["x", "y", "x", "x"], "treated": [0, 0, 1, 1], "revenue": [1.0, 2.0, 1.0, 2.0]}), {}, "more than one genre"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 1], "revenue": [1.0, 1.0, 2.0, 2.0]}), {"genre": None}, "standard error is 0"),
        (pd.DataFrame(columns=["creator", "genre", "treated", "revenue"]), {}, "users is empty"),
    ],
)
def test_summarize_bad_input(users, kwargs, match):
    with pytest.raises(ValueError, match=match):
        summarize_experiments(users, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_creators": 1}, "n_creators must be at least 2"),
        ({"n_genres": 0}, "n_genres must be at least 1"),
        ({"n_creators": 3, "n_genres": 4}, "must not exceed"),
        ({"min_users": 2}, "min_users must be at least 4"),
        ({"min_users": 100, "max_users": 50}, "max_users must be at least 100"),
        ({"sigma_creator": -1.0}, "sigma_creator must be finite and >= 0"),
        ({"treated_share": 1.0}, "treated_share must be in"),
        ({"genre_effects": [1.0, 2.0]}, "genre_effects must hold 5"),
        ({"n_creators": 2.5}, "n_creators must be an integer"),
        ({"sigma_creator": [0.1, 0.2]}, "one value or one per genre"),
        ({"sigma_creator": [0.1, 0.2, 0.1, 0.1, -0.1]}, "sigma_creator must be finite and >= 0"),
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
    z = (direct["effect"] - direct_truth.creators["effect"]) / direct["se"]
    assert abs(z.mean()) < 4 / np.sqrt(500) and 0.9 < z.std() < 1.1


def test_summaries_scale_and_reject_treated_share():
    summaries, _ = simulate_creator_summaries(200_000, seed=1)
    assert len(summaries) == 200_000 and (summaries["se"] > 0).all()
    with pytest.raises(ValueError, match="treated_share"):
        simulate_creator_summaries(treated_share=0.3)

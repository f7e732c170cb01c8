"""Tests for hbm_lib.metrics and hbm_lib.datasets."""

import numpy as np
import pandas as pd
import pytest

from hbm_lib import eight_schools
from hbm_lib.metrics import compare_methods, coverage, interval_width, mse, score, top_k_bias
from hbm_lib.pooling import complete_pooling, no_pooling


def test_eight_schools_is_rubins_data():
    d = eight_schools()
    assert d["school"].tolist() == list("ABCDEFGH")
    assert d["y"].tolist() == [28, 8, -3, 7, -1, 1, 18, 12]
    assert d["sigma"].tolist() == [15, 10, 16, 11, 9, 11, 10, 18]


def test_basic_metrics_known_answers():
    assert mse([1.0, -1.0, 3.0], [0.0, 0.0, 0.0]) == pytest.approx(11 / 3)
    assert coverage([0, 0, 0, 0], [1, 1, 1, 1], [0.0, 1.0, 1.5, -0.1]) == 0.5  # ends count as inside
    assert interval_width([0.0, -2.0], [1.0, 2.0]) == 2.5


def test_score_by_strata_keeps_categorical_order():
    est = np.array([1.0, 2.0, 3.0, 4.0])
    result = pd.DataFrame({"estimate": est, "lower": est - 0.5, "upper": est + 0.5})
    truth = [1.0, 1.0, 1.0, 1.0]
    strata = pd.cut([10, 50, 200, 900], [0, 100, 500, np.inf], labels=["<100", "100-500", ">500"])
    table = score(result, truth, strata=strata)
    assert table["stratum"].tolist() == ["all", "<100", "100-500", ">500"]
    assert table["n"].tolist() == [4, 2, 1, 1]
    # errors 0, 1, 2, 3: overall mse (0 + 1 + 4 + 9) / 4; stratum <100 holds errors 0 and 1
    assert table["mse"].tolist() == pytest.approx([3.5, 0.5, 4.0, 9.0])
    assert table["bias"].tolist() == pytest.approx([1.5, 0.5, 2.0, 3.0])
    # only the unit with error 0 lies inside its +-0.5 interval
    assert table["coverage"].tolist() == pytest.approx([0.25, 0.5, 0.0, 0.0])
    assert table["width"].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_compare_methods_is_tidy_and_consistent_with_score():
    rng = np.random.default_rng(3)
    truth = rng.normal(0, 1, 50)
    se = rng.uniform(0.5, 2, 50)
    y = rng.normal(truth, se)
    results = {"none": no_pooling(y, se), "complete": complete_pooling(y, se)}
    sizes = np.where(se < 1, "precise", "noisy")
    table = compare_methods(results, truth, strata=sizes)
    assert table["method"].unique().tolist() == ["none", "complete"]
    assert set(table["stratum"]) == {"all", "precise", "noisy"}
    row = table.query("method == 'none' and stratum == 'all'").iloc[0]
    assert row["mse"] == pytest.approx(mse(y, truth))
    assert row["coverage"] == pytest.approx(coverage(results["none"]["lower"], results["none"]["upper"], truth))


def test_no_pooling_covers_at_nominal_rate():
    # 20,000 units: the binomial sd of coverage is sqrt(.95 * .05 / 20000) = 0.0015; 0.006 is 4 sd
    rng = np.random.default_rng(5)
    truth = rng.normal(0, 1, 20_000)
    se = rng.uniform(0.5, 2, 20_000)
    table = score(no_pooling(rng.normal(truth, se), se), truth)
    assert table["coverage"].iloc[0] == pytest.approx(0.95, abs=0.006)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mse([1.0, 2.0], [1.0]), "lengths differ"),
        (lambda: mse([1.0, np.nan], [1.0, 1.0]), "estimate must be finite"),
        (lambda: coverage([2.0], [1.0], [1.5]), "lower must not exceed upper"),
        (lambda: interval_width([], []), "lower is empty"),
        (lambda: score(pd.DataFrame({"estimate": [1.0]}), [1.0]), "missing column"),
        (lambda: score(no_pooling([1.0, 2.0], [1.0, 1.0]), [1.0, 2.0], strata=["a"]), "strata must have one label"),
        (lambda: score(no_pooling([1.0, 2.0], [1.0, 1.0]), [1.0, 2.0], strata=["a", None]), "strata has a missing"),
        (lambda: compare_methods({}, [1.0]), "non-empty mapping"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_score_needs_a_dataframe():
    with pytest.raises(TypeError, match="result must be a pandas DataFrame"):
        score(np.zeros(3), [1.0, 2.0, 3.0])


def test_truth_in_another_order_is_aligned_by_label():
    from hbm_lib.pooling import no_pooling

    result = no_pooling(pd.Series([1.0, 2.0, 3.0], index=list("abc")), [1.0, 1.0, 1.0])
    truth = pd.Series({"c": 3.0, "a": 1.0, "b": 0.0})
    table = score(result, truth)
    assert table.loc[0, "mse"] == pytest.approx(4.0 / 3)  # only b is off, by 2
    assert mse(result["estimate"], truth) == pytest.approx(4.0 / 3)
    with pytest.raises(ValueError, match="labelled by different units: 'c'"):
        score(result, pd.Series({"a": 1.0, "b": 2.0, "d": 3.0}))


def test_compare_methods_refuses_frames_of_other_units():
    from hbm_lib.pooling import no_pooling

    a = no_pooling(pd.Series([1.0, 2.0], index=["a", "b"]), [1.0, 1.0])
    b = no_pooling(pd.Series([1.0, 2.0], index=["a", "c"]), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"results\['one'\] and results\['two'\] are labelled by different units"):
        compare_methods({"one": a, "two": b}, [0.0, 0.0])
    # the same units in another order are fine, scored in the first frame's order
    table = compare_methods({"one": a, "two": a.iloc[::-1]}, pd.Series({"b": 2.0, "a": 1.0}))
    assert table["mse"].tolist() == [0.0, 0.0]


def test_top_k_bias_known_answers_and_labels():
    # the two largest estimates are units 0 and 2: errors 3 - 1 = 2 and 2 - 2.5 = -0.5
    assert top_k_bias([3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 2.5, 0.0], k=2) == pytest.approx(0.75)
    assert top_k_bias([3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 2.5, 0.0], k=4) == pytest.approx(0.375)
    est = pd.Series([3.0, 1.0], index=["a", "b"])
    truth = pd.Series({"b": 1.0, "a": 0.0})  # another order: paired by label
    assert top_k_bias(est, truth, k=1) == 3.0


@pytest.mark.parametrize("k", [0, 5, 1.5, True])
def test_top_k_bias_bad_k(k):
    with pytest.raises(ValueError, match="k must be an integer between 1 and the number of units"):
        top_k_bias([1.0, 2.0, 3.0, 4.0], [0.0] * 4, k=k)


def test_winners_curse_and_the_posterior_mean():
    # theta ~ N(0, 1), y = theta + N(0, 1) ~ N(0, 2): the top 100 of 20,000 (0.5%) raw estimates
    # overstate their effects by E[noise | y] = y / 2 averaged over the top, about
    # sqrt(2) * E[Z | Z > 2.576] / 2 = sqrt(2) * 2.89 / 2 = 2.04 (the mean of 100 noises given y has
    # sd 0.071, so 1.7 is about 5 sd below). The posterior mean y / 2 has no selection bias: its errors
    # have sd 1 / sqrt(2), so their mean over 100 has sd 0.071 and 0.3 is 4 sd
    rng = np.random.default_rng(3)
    theta = rng.normal(size=20_000)
    y = theta + rng.normal(size=20_000)
    assert top_k_bias(y, theta, k=100) > 1.7
    assert abs(top_k_bias(y / 2, theta, k=100)) < 0.3

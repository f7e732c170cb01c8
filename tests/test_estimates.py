"""Tests for hbm_lib.estimates: from raw rows to one estimate and standard error per unit."""

import numpy as np
import pandas as pd
import pytest

from hbm_lib.estimates import difference_in_means, group_means


def test_difference_in_means_matches_hand_computation():
    users = pd.DataFrame(
        {
            "creator": ["a"] * 5 + ["b"] * 4,
            "genre": ["g"] * 5 + ["h"] * 4,
            "treated": [0, 0, 1, 1, 1, 0, 1, 0, 1],
            "revenue": [1.0, 3.0, 2.0, 4.0, 9.0, 0.0, 0.0, 2.0, 6.0],
        }
    )
    out = difference_in_means(users, unit="creator", treated="treated", outcome="revenue", groups="genre")
    assert out.index.name == "creator" and out.index.tolist() == ["a", "b"]
    assert out["genre"].tolist() == ["g", "h"]
    a = out.iloc[0]
    assert (a["n_control"], a["n_treated"], a["n"]) == (2, 3, 5)
    assert a["estimate"] == pytest.approx(5.0 - 2.0)
    assert a["se"] == pytest.approx(np.sqrt(np.var([2, 4, 9], ddof=1) / 3 + np.var([1, 3], ddof=1) / 2))


@pytest.mark.parametrize(
    ("users", "kwargs", "match"),
    [
        (pd.DataFrame({"creator": ["a"] * 3, "treated": [0, 0, 1], "revenue": [1.0, 2.0, 3.0]}), {"groups": None}, "empty or single-row arm"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 0, 0], "revenue": [1.0, 2.0, 3.0, 4.0]}), {"groups": None}, "empty or single-row arm"),
        (pd.DataFrame({"creator": ["a"], "revenue": [1.0]}), {"groups": None}, "missing column"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 2], "revenue": [1.0] * 4}), {"groups": None}, "must be 0 or 1"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 1], "revenue": [1.0, np.nan, 1.0, 2.0]}), {"groups": None}, "must be finite"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 1], "revenue": ["1", "2", "1", "2"]}), {"groups": None}, "must be numeric"),
        (pd.DataFrame({"creator": ["a", None, "a", "a"], "treated": [0, 0, 1, 1], "revenue": [1.0, 2.0, 1.0, 2.0]}), {"groups": None}, "missing label"),
        (pd.DataFrame({"creator": ["a"] * 4, "genre": ["x", "y", "x", "x"], "treated": [0, 0, 1, 1], "revenue": [1.0, 2.0, 1.0, 2.0]}), {}, "more than one 'genre'"),
        (pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 1], "revenue": [1.0, 1.0, 2.0, 2.0]}), {"groups": None}, "standard error is 0"),
        (pd.DataFrame(columns=["creator", "genre", "treated", "revenue"]), {}, "rows is empty"),
    ],
)
def test_difference_in_means_bad_input(users, kwargs, match):
    options = {"unit": "creator", "treated": "treated", "outcome": "revenue", "groups": "genre", **kwargs}
    with pytest.raises(ValueError, match=match):
        difference_in_means(users, **options)
    with pytest.raises(TypeError, match="rows must be a pandas DataFrame"):
        difference_in_means(users.to_dict(), **options)


def test_group_means_pooled_and_own_sd():
    rows = pd.DataFrame({"g": ["a", "a", "a", "b", "b", "c"], "y": [1.0, 2.0, 3.0, 10.0, 14.0, 7.0]})
    pooled = group_means(rows, groups="g", outcome="y")
    # pooled within-group variance: (2 * 1 + 1 * 8) / (2 + 1) = 10 / 3
    sd = np.sqrt(10 / 3)
    assert pooled.index.name == "g" and pooled.index.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(pooled["estimate"], [2.0, 12.0, 7.0])
    np.testing.assert_allclose(pooled["se"], sd / np.sqrt([3, 2, 1]))  # a group of one has an se too
    assert pooled["n"].tolist() == [3, 2, 1]
    own = group_means(rows[rows["g"] != "c"], groups="g", outcome="y", sd="own")
    np.testing.assert_allclose(own["se"], [1.0 / np.sqrt(3), np.sqrt(8.0) / np.sqrt(2)])
    with pytest.raises(ValueError, match="groups: 'c' has a single row"):
        group_means(rows, groups="g", outcome="y", sd="own")


@pytest.mark.parametrize(
    "rows, kwargs, match",
    [
        (pd.DataFrame({"g": ["a", "b"], "y": [1.0, 2.0]}), {}, "every group has a single row"),
        (pd.DataFrame({"g": ["a", "a"], "y": [1.0, 1.0]}), {}, "within-group sd is 0"),
        (pd.DataFrame({"g": ["a", "a"], "y": [1.0, np.inf]}), {}, "must be finite"),
        (pd.DataFrame({"g": ["a", "a"], "x": [1.0, 2.0]}), {}, "missing column"),
        (pd.DataFrame({"g": ["a", "a"], "y": [1.0, 2.0]}), {"sd": "mine"}, "sd must be one of"),
        (pd.DataFrame({"g": ["a", "a"], "y": [True, False]}), {}, "must be numeric"),
        (pd.DataFrame([["a", "b", 1.0], ["a", "b", 2.0]], columns=["g", "g", "y"]), {}, "more than one column named 'g'"),
    ],
)
def test_group_means_bad_input(rows, kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_means(rows, groups="g", outcome="y", **kwargs)

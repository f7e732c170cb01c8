"""Tests of hbm_lib._validation: labelled inputs are paired by label or refused, never by position."""

import numpy as np
import pandas as pd
import pytest

from hbm_lib._validation import align, as_generator, as_seed_int, reject_unknown, unit_labels


def test_equal_indexes_pass_through_and_arrays_are_positional():
    y = pd.Series([1.0, 2.0], index=["a", "b"])
    out = align(y=y, se=[0.1, 0.2], units=None)
    assert out["y"] is y and out["se"] == [0.1, 0.2] and out["units"] is None


def test_another_order_is_reordered_to_the_first_input():
    y = pd.Series([1.0, 2.0, 3.0], index=["w", "x", "y"])
    se = pd.Series([0.3, 0.2, 0.1], index=["y", "x", "w"])
    out = align(y=y, se=se)
    assert out["se"].index.tolist() == ["w", "x", "y"]
    assert out["se"].tolist() == [0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    "se, match",
    [
        (pd.Series([0.1, 0.2], index=["a", "c"]), "y and se are labelled by different units: 'b' is in the index of y but not in that of se"),
        (pd.Series([0.1, 0.2, 0.3], index=["a", "b", "c"]), "'c' is in the index of se but not in that of y"),
        (pd.Series([0.1, 0.2], index=["a", "a"]), "se has the index label 'a' more than once"),
    ],
)
def test_different_units_are_refused_naming_both_arguments_and_a_label(se, match):
    y = pd.Series([1.0, 2.0], index=["a", "b"])
    with pytest.raises(ValueError, match=match):
        align(y=y, se=se)


def test_a_frame_and_a_series_align_too():
    frame = pd.DataFrame({"estimate": [1.0, 2.0]}, index=["a", "b"])
    truth = pd.Series([20.0, 10.0], index=["b", "a"])
    assert align(result=frame, truth=truth)["truth"].tolist() == [10.0, 20.0]


def test_unit_labels_keep_the_users_index_name():
    y = pd.Series([1.0, 2.0], index=pd.Index(["a", "b"], name="school"))
    assert unit_labels(None, y, 2).name == "school"
    assert unit_labels(None, [1.0, 2.0], 2).name == "unit"
    assert unit_labels(pd.Series(["p", "q"], name="county"), y, 2).name == "county"
    with pytest.raises(ValueError, match="units must be one-dimensional"):
        unit_labels(np.array([["a", "b"]]), y, 2)
    with pytest.raises(ValueError, match="a single value"):
        unit_labels("ab", y, 2)


def test_seeds_are_ints_or_generators():
    assert as_seed_int(5) == 5
    rng = np.random.default_rng(1)
    first = as_seed_int(rng)
    assert first != as_seed_int(rng)  # a Generator advances
    assert isinstance(as_generator(3), np.random.Generator)
    for bad in (-1, 1.5, True, "1", None):
        with pytest.raises(ValueError, match="seed must be a non-negative integer or a numpy.random.Generator"):
            as_generator(bad)


def test_unknown_options_name_the_closest_known_one():
    with pytest.raises(TypeError, match="f\\(\\) got an unknown option 'drws'; did you mean 'draws'"):
        reject_unknown("f()", {"drws": 1}, ["draws", "tune"])
    with pytest.raises(TypeError, match="'rng'; did you mean 'seed'"):
        reject_unknown("f()", {"rng": 1}, ["draws", "seed"])
    with pytest.raises(TypeError, match="it accepts \\['draws', 'tune'\\]"):
        reject_unknown("f()", {"zzz": 1}, ["draws", "tune"])

"""Tests of hbm_lib.decisions on hand-made draws (no sampling): exact answers, antisymmetry, errors."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hbm_lib.decisions import pairwise_prob_greater, prob_greater, prob_positive


def _idata(values: np.ndarray, labels, *, var: str = "rate", dim: str = "variant") -> xr.DataTree:
    """A fit (DataTree) with one variable of shape (chain, draw, labels)."""
    posterior = xr.Dataset({var: (("chain", "draw", dim), values)}, coords={dim: list(labels)})
    return xr.DataTree.from_dict({"posterior": posterior})


# hand-made draws: 2 chains x 5 draws of three variants; counting by eye,
# A > B in draws 0, 2, 5, 9 (4 of 10); A > C in 0, 1, 2, 3, 5, 9 (6); B > C in 1, 2, 3, 4, 6, 7, 8 (7)
HAND = np.array(
    [
        [[0.9, 0.1, 0.5], [0.6, 0.7, 0.2], [0.5, 0.4, 0.3], [0.3, 0.8, 0.1], [0.2, 0.6, 0.4]],
        [[0.8, 0.3, 0.7], [0.1, 0.5, 0.2], [0.2, 0.9, 0.3], [0.3, 0.6, 0.4], [0.7, 0.2, 0.6]],
    ]
)


def test_prob_greater_known_answers():
    idata = _idata(HAND, ["A", "B", "C"])
    assert prob_greater(idata, "rate", "A", "B") == pytest.approx(0.4)
    assert prob_greater(idata, "rate", "B", "A") == pytest.approx(0.6)
    assert prob_greater(idata, "rate", "A", "C") == pytest.approx(0.6)
    assert prob_greater(idata, "rate", "B", "C") == pytest.approx(0.7)
    assert prob_greater(idata, "rate", "C", "B", dim="variant") == pytest.approx(0.3)
    # the posterior group (node or Dataset) works as well as the whole DataTree
    assert prob_greater(idata["posterior"], "rate", "A", "B") == pytest.approx(0.4)
    assert isinstance(prob_greater(idata, "rate", "A", "B"), float)


def test_pairwise_matrix_known_answers():
    table = pairwise_prob_greater(_idata(HAND, ["A", "B", "C"]), "rate")
    expected = pd.DataFrame(
        [[np.nan, 0.4, 0.6], [0.6, np.nan, 0.7], [0.4, 0.3, np.nan]],
        index=pd.Index(["A", "B", "C"], name="variant"),
        columns=pd.Index(["A", "B", "C"], name="variant"),
    )
    pd.testing.assert_frame_equal(table, expected, check_index_type=False, check_column_type=False)


def test_pairwise_matches_prob_greater_and_keeps_label_types():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 200, 4))
    idata = _idata(values, [10, 20, 30, 40], dim="country")
    table = pairwise_prob_greater(idata, "rate")
    assert table.index.tolist() == [10, 20, 30, 40] == table.columns.tolist()
    assert table.index.name == "country"
    for i in table.index:
        for j in table.columns:
            if i != j:
                assert table.loc[i, j] == prob_greater(idata, "rate", i, j)


def test_ties_count_for_neither_side():
    # identical draws: neither is greater
    values = np.array([[[1.0, 1.0], [2.0, 2.0], [3.0, 1.0], [0.0, 5.0]]])
    idata = _idata(values, ["A", "B"])
    assert prob_greater(idata, "rate", "A", "B") == 0.25
    assert prob_greater(idata, "rate", "B", "A") == 0.25


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    chains=st.integers(1, 4),
    draws=st.integers(1, 300),
    n_labels=st.integers(2, 6),
    scale=st.floats(1e-3, 1e3),
)
def test_antisymmetry_on_continuous_draws(seed, chains, draws, n_labels, scale):
    # continuous draws have no ties (with probability 1), so P(A > B) + P(B > A) = 1 exactly
    rng = np.random.default_rng(seed)
    values = scale * rng.standard_normal((chains, draws, n_labels)) + rng.normal(size=n_labels)
    idata = _idata(values, [f"v{k}" for k in range(n_labels)])
    table = pairwise_prob_greater(idata, "rate")
    off_diagonal = ~np.eye(n_labels, dtype=bool)
    total = table.to_numpy() + table.to_numpy().T
    np.testing.assert_allclose(total[off_diagonal], 1.0, rtol=0, atol=1e-12)
    assert np.isnan(np.diag(table.to_numpy())).all()
    assert prob_greater(idata, "rate", "v0", "v1") + prob_greater(idata, "rate", "v1", "v0") == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(values=arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 40), st.just(2)),
                     elements=st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 1))))
def test_greater_less_and_equal_add_to_one_with_ties(values):
    # rounded values tie often: P(A > B) + P(B > A) + P(A = B) = 1
    idata = _idata(values, ["A", "B"])
    flat = values.reshape(-1, 2)
    ties = np.mean(flat[:, 0] == flat[:, 1])
    total = prob_greater(idata, "rate", "A", "B") + prob_greater(idata, "rate", "B", "A") + ties
    assert total == pytest.approx(1.0)


def test_prob_positive_known_answers():
    lift = np.array([[[0.1, -0.2], [0.0, 0.3], [0.2, -0.1], [-0.1, -0.3]]])  # 0 is not > 0
    idata = _idata(lift, ["Canada", "China"], var="lift", dim="group")
    out = prob_positive(idata, "lift")
    expected = pd.Series([0.5, 0.25], index=pd.Index(["Canada", "China"], name="group"), name="P(lift > 0)")
    pd.testing.assert_series_equal(out, expected, check_index_type=False)


def test_works_on_stacked_draws():
    idata = _idata(HAND, ["A", "B", "C"])
    stacked = az.extract(idata, keep_dataset=True)  # draws stacked along "sample"
    assert prob_greater(stacked, "rate", "A", "B") == pytest.approx(0.4)
    assert prob_positive(stacked, "rate").tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------------
# bad input


def _mixed() -> xr.DataTree:
    rng = np.random.default_rng(1)
    return az.from_dict(
        {
            "posterior": {
                "rate": rng.random((2, 10, 3)),
                "mu": rng.random((2, 10)),
                "theta": rng.random((2, 10, 3, 2)),
            }
        },
        coords={"variant": ["A", "B", "C"], "arm": [0, 1]},
        dims={"rate": ["variant"], "theta": ["variant", "arm"]},
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda d: prob_greater(d, "nope", "A", "B"), r"var: 'nope' is not a variable .*\['rate', 'mu', 'theta'\]"),
        (lambda d: prob_greater(d, "rate", "A", "Z"), r"second: 'Z' is not a label .*\['A', 'B', 'C'\]"),
        (lambda d: prob_greater(d, "rate", "Z", "A"), r"first: 'Z' is not a label"),
        (lambda d: prob_greater(d, "rate", ["A", "B"], "C"), r"first: \['A', 'B'\] is not a label"),
        (lambda d: prob_greater(d, "rate", "A", "A"), r"first and second are the same label"),
        (lambda d: prob_greater(d, "mu", 0, 1), r"var: 'mu' must have exactly one dimension .* scalar"),
        (lambda d: prob_greater(d, "theta", "A", "B"), r"var: 'theta' must have exactly one dimension"),
        (lambda d: prob_greater(d, "theta", "A", "B", dim="variant"), r"var: 'theta' must have exactly one"),
        (lambda d: prob_greater(d, "rate", "A", "B", dim="group"), r"dim: 'rate' has no dimension 'group'"),
        (lambda d: pairwise_prob_greater(d, "mu"), r"var: 'mu'"),
        (lambda d: pairwise_prob_greater(d, "rate", dim="chain"), r"dim"),
        (lambda d: prob_positive(d, "nope"), r"var: 'nope'"),
        (lambda d: prob_positive(d, "theta"), r"var: 'theta'"),
        (lambda d: prob_positive({"rate": np.ones((2, 3))}, "rate"), r"posterior must be an xarray.DataTree with a posterior group"),
        (lambda d: prob_positive(az.from_dict({"prior": {"rate": np.ones((1, 5, 2))}}), "rate"), r"no posterior group"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(_mixed())


def test_non_finite_draws_are_rejected():
    values = HAND.copy()
    values[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="var: 'rate' has non-finite draws"):
        prob_greater(_idata(values, ["A", "B", "C"]), "rate", "A", "B")


def test_unlabelled_dimension_uses_positions():
    ds = xr.Dataset({"rate": (("chain", "draw", "v"), HAND)})  # no coordinate on v
    assert prob_greater(ds, "rate", 0, 1) == pytest.approx(0.4)
    assert pairwise_prob_greater(ds, "rate").index.tolist() == [0, 1, 2]

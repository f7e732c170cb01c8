"""Tests of hbm_lib.selection: comparing groupings by leave-one-out (exact, or PSIS-LOO).

The statistical behaviour is tested on the exact route (``fit_options={"method": "grid"}``: exact
posterior, exact LOO; fast), and PSIS-LOO's own machinery (Pareto k, its warnings, the samplers) on
NUTS fits, marked ``slow``; the fits are cached per module. All seeds are fixed, so the numbers
quoted in comments are the ones these tests see.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
import pytest

from hbm_lib.elpd import loo
from hbm_lib.selection import GroupingComparison, _warn_pareto_k, compare_groupings, elpd_diff_z
from hbm_lib.simulate import simulate_creator_summaries

BASELINE = "single population"
# the library's defaults for draws and tuning (4 x 500 left R-hat at 1.012 for one model under nutpie)
FIT = dict(fit_options=dict(draws=1000, tune=1000, chains=4, cores=2))
EXACT = dict(fit_options=dict(method="grid"))
PARETO = "Pareto k above"


def _pareto_warnings(record) -> list[str]:
    return [str(w.message) for w in record if PARETO in str(w.message)]


# --------------------------------------------------------------------------------------------
# fits (slow), cached per module


@pytest.fixture(scope="module")
def genre_results() -> list[tuple[GroupingComparison, list[str]]]:
    """Genre-driven effects (sigma_genre 0.4 >> sigma_creator 0.15), 200 creators, 3 seeds, on the
    exact route.

    ``min_users=300`` keeps the standard errors (median ~0.23) comparable to sigma_creator, so
    sigma_unit is identified. Candidates: the true genres and a random five-way split.
    """
    out = []
    for seed in (1, 2, 3):
        s, _ = simulate_creator_summaries(
            200, 5, sigma_genre=0.4, sigma_creator=0.15, min_users=300, seed=seed
        )
        random_groups = np.random.default_rng(100 + seed).integers(0, 5, len(s)).astype(str)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            result = compare_groupings(
                s["estimate"], s["se"], {"genre": s["genre"], "random": random_groups}, seed=seed, **EXACT,
            )
        out.append((result, [str(w.message) for w in record]))
    return out


@pytest.fixture(scope="module")
def flat_result() -> tuple[GroupingComparison, list[str]]:
    """No group structure: every effect from one normal, 250 units."""
    rng = np.random.default_rng(7)
    n = 250
    theta = rng.normal(0.3, 0.25, n)
    se = rng.uniform(0.1, 0.4, n)
    y = rng.normal(theta, se)
    random_groups = rng.integers(0, 5, n).astype(str)
    noise_quartile = pd.qcut(rng.normal(size=n), 4, labels=["q1", "q2", "q3", "q4"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = compare_groupings(
            y, se, {"random": random_groups, "noise quartile": noise_quartile}, seed=3, **FIT
        )
    return result, [str(w.message) for w in record]


# --------------------------------------------------------------------------------------------
# statistical behaviour (slow)


def test_genre_grouping_wins_when_effects_are_genre_driven(genre_results):
    # Genre beats the baseline and the random split by 7-15 dse in every seed (measured with
    # NUTS and PSIS-LOO before the exact route existed; the exact values are the same to well
    # under one unit of log score), so the 2-dse bar below is the usual reading rule, not a tolerance.
    diffs = {"random": [], BASELINE: []}
    dses = {"random": [], BASELINE: []}
    genre_first = 0
    for result, _ in genre_results:
        vs = result.versus("genre")
        for other in diffs:
            diffs[other].append(-vs.loc[other, "elpd_diff"])  # genre minus other
            dses[other].append(vs.loc[other, "dse"])
        genre_first += result.table.index[0] == "genre"
    for other in diffs:
        mean_diff, mean_dse = np.mean(diffs[other]), np.mean(dses[other])
        assert mean_diff > 2 * mean_dse, (other, diffs[other], dses[other])
    assert genre_first >= 2, [r.table.index.tolist() for r, _ in genre_results]


@pytest.mark.slow
def test_no_grouping_beats_the_baseline_without_group_structure(flat_result):
    # Measured: random -0.7 (dse 0.7), noise quartile -0.3 (dse 1.1) relative to the baseline,
    # which ranks first: the extra level costs a fraction of a point and buys nothing.
    result, _ = flat_result
    vs = result.versus()
    for name in ("random", "noise quartile"):
        assert vs.loc[name, "elpd_diff"] < 2 * vs.loc[name, "dse"], vs
    assert vs.loc[BASELINE, ["elpd_diff", "dse", "z"]].tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(vs.loc[BASELINE, "p_better"])  # ArviZ gives no probability for the reference


def test_result_holds_every_model(genre_results):
    result, _ = genre_results[0]
    names = [BASELINE, "genre", "random"]
    assert list(result.fits) == names and list(result.loo) == names
    assert sorted(result.table.index) == sorted(names)
    assert result.table.columns.tolist() == [
        "rank", "elpd_diff", "dse", "p_worse", "diag_diff", "diag_elpd", "p", "elpd", "se", "weight"
    ]
    assert result.table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert ((result.table["weight"] >= -1e-12) & (result.table["weight"] <= 1 + 1e-12)).all()
    # the table is ArviZ's, computed from the stored loo objects
    pd.testing.assert_frame_equal(result.table, az.compare(result.loo, round_to="none"))

    assert result.pareto_k.shape == (200, 3)
    assert result.pareto_k.columns.tolist() == names
    assert result.pareto_k.index[0] == "creator 001" and result.pareto_k.index.name == "creator"  # the user's index name
    assert result.pareto_k.isna().all().all()  # exact leave-one-out: nothing importance-sampled

    assert result.convergence.index.names == ["model", "variable"]
    assert set(result.convergence.index.get_level_values("model")) == set(names)
    assert result.convergence.loc["genre"].index.tolist() == ["sigma_unit", "sigma_group", "mu", "mu_group", "theta"]
    assert result.convergence["ok"].all(), result.convergence
    assert (result.convergence["checked"] == "independent draws").all()
    for _, messages in genre_results:
        assert not messages, messages  # no warning of any kind on the exact route

    for name, idata in result.fits.items():
        assert idata["log_likelihood"]["y"].shape == (4, 1000, 200)
        assert idata["exact_loo"]["elpd_i"].shape == (200,)
        assert ("sigma_group" in idata["posterior"]) == (name != BASELINE)
    assert result.fits["genre"]["posterior"]["group"].to_numpy().tolist() == [f"genre {k}" for k in range(1, 6)]


@pytest.mark.slow
def test_psis_result_carries_pareto_k(flat_result):
    result, _ = flat_result
    np.testing.assert_array_equal(result.pareto_k["random"], result.loo["random"].pareto_k)
    assert all(elpd.kind == "loo" for elpd in result.loo.values())
    for idata in result.fits.values():
        assert idata["log_likelihood"]["y"].shape == (4, 1000, 250)


@pytest.mark.slow
def test_pareto_k_warning_for_an_outlier():
    # 30 units with y ~ N(0, 0.1) and se 0.1, plus one at y = 5 with se 0.01: that single unit sets
    # sigma_unit (~1 with it, ~0 without), so leaving it out moves the posterior far beyond what
    # importance sampling can reach. Measured: k = 1.8 (single population) and 2.0 (grouped).
    rng = np.random.default_rng(5)
    y = np.r_[rng.normal(0.0, 0.1, 30), 5.0]
    se = np.r_[np.full(30, 0.1), 0.01]
    groups = np.r_[np.repeat(np.array(["a", "b", "c"]), 10), ["a"]]
    with pytest.warns(UserWarning, match=r"Pareto k above 0\.70 in 'single population' \(1 of 31 units, largest k = \d") as record:
        result = compare_groupings(y, se, {"abc": groups}, seed=1, **FIT)
    messages = [str(w.message) for w in record]
    ours = _pareto_warnings(record)
    assert len(ours) == 1 and "'abc' (1 of 31 units" in ours[0], messages
    # ArviZ's own warning about the same thing is suppressed
    assert not [m for m in messages if "Estimated shape parameter of Pareto" in m], messages
    assert result.pareto_k.idxmax().tolist() == [30, 30]
    assert (result.pareto_k.drop(index=30) < 0.7).all().all()
    assert (result.table["diag_elpd"] == "1 k̂ > 0.70").all()


@pytest.mark.slow
def test_no_pareto_k_warning_in_clean_cases(flat_result):
    # Measured largest k: 0.13-0.54 across these fits (threshold 0.70 for 4000 draws).
    for result, messages in [flat_result]:
        assert not _pareto_warnings_from(messages), messages
        assert (result.table["diag_elpd"] == "").all()
        assert (result.pareto_k.to_numpy() <= 0.7).all()


def _pareto_warnings_from(messages: list[str]) -> list[str]:
    return [m for m in messages if PARETO in m or "Estimated shape parameter of Pareto" in m]


def test_same_seed_gives_identical_results():
    s, _ = simulate_creator_summaries(40, 4, sigma_genre=0.4, seed=3)
    args = (s["estimate"], s["se"], {"genre": s["genre"]})
    first = compare_groupings(*args, seed=11, **EXACT)
    again = compare_groupings(*args, seed=11, **EXACT)
    other = compare_groupings(*args, seed=12, **EXACT)
    pd.testing.assert_frame_equal(first.table, again.table)
    for name in first.fits:
        xr.testing.assert_identical(first.fits[name]["posterior"], again.fits[name]["posterior"])
        assert not np.allclose(first.fits[name]["posterior"]["mu"], other.fits[name]["posterior"]["mu"])
    # each model has its own seed: the two posteriors' draws of mu are different draws
    a = first.fits[BASELINE]["posterior"]["mu"].to_numpy()
    b = first.fits["genre"]["posterior"]["mu"].to_numpy()
    assert not np.allclose(a, b)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # 2 x 100 draws: convergence is not the point here
@pytest.mark.parametrize("sampler", ["pymc", "nutpie"])
def test_every_model_runs_the_sampler_it_is_asked_for(sampler):
    s, _ = simulate_creator_summaries(40, 4, sigma_genre=0.4, seed=3)
    result = compare_groupings(
        s["estimate"], s["se"], {"genre": s["genre"]}, seed=1,
        fit_options=dict(draws=100, tune=100, chains=2, cores=1, nuts_sampler=sampler),
    )
    assert [idata["posterior"].attrs["inference_library"] for idata in result.fits.values()] == [sampler] * 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Pareto k above")  # 60 draws: good_k is 0.44, most units fail it
def test_convergence_warnings_name_the_model():
    s, _ = simulate_creator_summaries(40, 4, sigma_genre=0.4, seed=3)
    with pytest.warns(UserWarning, match=r"^model '(single population|genre)': \w+ has not converged") as record:
        result = compare_groupings(
            s["estimate"], s["se"], {"genre": s["genre"]}, seed=1, fit_options=dict(draws=30, tune=30, chains=2, cores=1)
        )
    not_converged = [str(w.message) for w in record if "has not converged" in str(w.message)]
    assert all(m.startswith("model '") for m in not_converged), not_converged
    assert not result.convergence["ok"].all()


# --------------------------------------------------------------------------------------------
# the exact route: fit_options={"method": "grid"} (fast)


def test_grid_route_uses_exact_loo_and_agrees_with_psis():
    s, _ = simulate_creator_summaries(200, 5, sigma_genre=0.4, sigma_creator=0.15, min_users=300, seed=1)
    random_groups = np.random.default_rng(101).integers(0, 5, len(s)).astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no convergence or Pareto-k warnings: nothing was sampled
        result = compare_groupings(s["estimate"], s["se"], {"genre": s["genre"], "random": random_groups},
                                   seed=1, fit_options={"method": "grid"})
    assert all(elpd.kind == "loo_kfold" and elpd.n_folds == 200 for elpd in result.loo.values())
    assert result.pareto_k.isna().all().all() and result.pareto_k.shape == (200, 3)
    assert result.table.index[0] == "genre"
    vs = result.versus("genre")
    assert (-vs.loc[["random", BASELINE], "elpd_diff"] > 2 * vs.loc[["random", BASELINE], "dse"]).all()
    # the same fits' PSIS-LOO (from 4000 exact draws) agrees with the exact values: per unit to
    # its Monte Carlo error, in total to well under one unit of log score
    for name, idata in result.fits.items():
        psis = loo(idata, method="psis")
        assert abs(psis.elpd - result.loo[name].elpd) < 0.5, name
        assert np.max(np.abs(psis.elpd_i.to_numpy() - result.loo[name].elpd_i.to_numpy())) < 0.05, name


def test_loo_methods_and_refusals():
    s, _ = simulate_creator_summaries(30, 3, seed=2)
    from hbm_lib import fit, hierarchical_normal

    grid_fit = fit(hierarchical_normal(s["estimate"], s["se"]), method="grid", draws=100, seed=0)
    assert loo(grid_fit).kind == "loo_kfold" and loo(grid_fit, method="exact").kind == "loo_kfold"
    with pytest.raises(ValueError, match="method must be one of"):
        loo(grid_fit, method="kfold")
    with pytest.raises(TypeError, match="idata must be an xarray.DataTree"):
        loo(grid_fit["posterior"].to_dataset())
    no_loo = fit(hierarchical_normal(s["estimate"], s["se"]), method="grid", draws=100, seed=0, keep_log_likelihood=False)
    with pytest.raises(ValueError, match="no exact_loo group"):
        loo(no_loo, method="exact")


def test_fast_exact_route_equals_the_fitted_one():
    # keep_fits=False with the grid: no PyMC model and no draws, the same exact LOO
    s, _ = simulate_creator_summaries(80, 4, sigma_genre=0.3, seed=4)
    groupings = {"genre": s["genre"], "halves": np.where(np.arange(80) < 40, "first", "second")}
    fitted = compare_groupings(s["estimate"], s["se"], groupings, seed=2, fit_options={"method": "grid"})
    messages = []
    fast = compare_groupings(s["estimate"], s["se"], groupings, seed=2, fit_options={"method": "grid"},
                             keep_fits=False, progress=messages.append)
    assert fast.fits == {} and fast.convergence.empty
    pd.testing.assert_frame_equal(fast.table, fitted.table)
    for name in fitted.loo:
        np.testing.assert_array_equal(fast.loo[name].elpd_i, fitted.loo[name].elpd_i)
    assert len(messages) == 3 and messages[0].startswith("compare_groupings: exact LOO of 'single population'")
    with pytest.raises(TypeError, match="do not apply to the exact route"):
        compare_groupings(s["estimate"], s["se"], groupings, fit_options={"method": "grid", "target_accept": 0.9},
                          keep_fits=False)
    with pytest.raises(TypeError, match="keep_fits must be"):
        compare_groupings(s["estimate"], s["se"], groupings, fit_options={"method": "grid"}, keep_fits="no")


def test_between_group_chi2_known_answers_and_checks():
    from hbm_lib.selection import between_group_chi2

    # two groups of two units, means 0 and 2, unit se: W_g = 2 each, grand mean 1, Q = 2 + 2
    assert between_group_chi2([0.0, 0.0, 2.0, 2.0], [1.0] * 4, ["a", "a", "b", "b"]) == pytest.approx(4.0)
    # one group: no between-group spread; identical group means: zero
    assert between_group_chi2([0.0, 1.0, 2.0], [1.0] * 3, ["a"] * 3) == pytest.approx(0.0)
    assert between_group_chi2([0.0, 1.0, 0.0, 1.0], [1.0] * 4, ["a", "a", "b", "b"]) == pytest.approx(0.0)
    # precision weighting: a precise unit pulls its group's mean
    q = between_group_chi2([0.0, 3.0, 1.0], [1.0, 0.1, 1.0], ["a", "a", "b"])
    w_a, m_a = 1.0 + 100.0, (0.0 + 300.0) / 101.0
    grand = (300.0 + 1.0) / 102.0
    assert q == pytest.approx(w_a * (m_a - grand) ** 2 + 1.0 * (1.0 - grand) ** 2)
    # labelled inputs are aligned by label
    y = pd.Series([0.0, 2.0, 0.0, 2.0], index=list("wxyz"))
    g = pd.Series(["a", "b", "a", "b"], index=list("wxyz"))
    assert between_group_chi2(y, pd.Series(1.0, index=list("zyxw")), g.iloc[::-1]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="se"):
        between_group_chi2([0.0, 1.0], [1.0, 0.0], ["a", "b"])
    with pytest.raises(ValueError, match="groups must have one label per unit"):
        between_group_chi2([0.0, 1.0], [1.0, 1.0], ["a"])


# --------------------------------------------------------------------------------------------
# the Pareto-k warning logic, on crafted ELPDData (fast)


def _fake_loo(k: list[float], good_k: float = 0.7) -> az.ELPDData:
    k = xr.DataArray(np.asarray(k), dims=["unit"])
    return az.ELPDData(
        elpd=0.0, se=0.0, p=0.0, n_samples=4000, n_data_points=k.size, scale="log",
        warning=bool((k > good_k).any()), good_k=good_k, pareto_k=k,
    )


def test_pareto_warning_names_models_counts_and_largest_k():
    loo = {"a": _fake_loo([0.1, 0.2, 0.3]), "b": _fake_loo([0.9, 0.69, 0.5, 1.234])}
    with pytest.warns(UserWarning, match=r"Pareto k above 0\.70 in 'b' \(2 of 4 units, largest k = 1\.23\)") as record:
        _warn_pareto_k(loo)
    assert len(record) == 1 and "'a'" not in str(record[0].message)


def test_pareto_k_at_the_threshold_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_pareto_k({"a": _fake_loo([0.7, 0.2]), "b": _fake_loo([0.5])})


# --------------------------------------------------------------------------------------------
# elpd_diff_z (fast)


def test_elpd_diff_z_is_zero_for_the_best_and_a_ratio_otherwise():
    table = pd.DataFrame(
        {"elpd_diff": [0.0, -3.0, -1.0, 0.0], "dse": [0.0, 1.5, 2.0, 0.0]},
        index=["best", "worse", "close", "tie"],
    )
    z = elpd_diff_z(table)
    assert z.name == "elpd_diff_z"
    assert z.index.tolist() == table.index.tolist()
    assert z.tolist() == [0.0, 2.0, 0.5, 0.0]
    assert not z.isna().any()


def test_elpd_diff_z_checks_its_input():
    with pytest.raises(ValueError, match="missing \\['dse'\\]"):
        elpd_diff_z(pd.DataFrame({"elpd_diff": [0.0]}))
    with pytest.raises(TypeError, match="table must be a DataFrame"):
        elpd_diff_z({"elpd_diff": [0.0], "dse": [0.0]})
    # measured from a reference that is not the best (ArviZ's reference=): refuse, do not flip
    with pytest.raises(ValueError, match="elpd_diff must be <= 0"):
        elpd_diff_z(pd.DataFrame({"elpd_diff": [0.0, 1.5], "dse": [0.0, 0.5]}))


# --------------------------------------------------------------------------------------------
# input checks (fast: they fail before any fit)

Y = np.array([0.1, 0.4, -0.2, 0.3, 0.0, 0.5])
SE = np.full(6, 0.2)
GOOD = {"pairs": ["a", "a", "b", "b", "c", "c"]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(y=[0.1, np.nan, 0.2, 0.3, 0.0, 0.5]), r"y must be finite; got nan at position 1"),
        (dict(se=[0.2, 0.2, 0.0, 0.2, 0.2, 0.2]), r"se must be positive; got 0 at position 2"),
        (dict(se=[0.2] * 5), r"lengths differ: y has 6, se has 5"),
        (dict(y=[]), r"y is empty"),
        (dict(groupings={}), r"groupings is empty"),
        (dict(groupings={"short": ["a", "b", "a"]}), r"groupings\['short'\] must have one label per unit: expected 6, got 3"),
        (dict(groupings={"gaps": ["a", None, "b", "b", "a", "a"]}), r"groupings\['gaps'\] has a missing label at position 1"),
        (dict(groupings={"one": ["a"] * 6}), r"groupings\['one'\] has a single group .* needs at least two groups"),
        (dict(groupings={"each": list("abcdef")}), r"groupings\['each'\] .*one group per unit is no pooling, not a grouping"),
        (dict(groupings={BASELINE: GOOD["pairs"]}), r"the name 'single population' is taken by the baseline"),
        (dict(groupings={"x": GOOD["pairs"]}, baseline="x"), r"the name 'x' is taken by the baseline"),
        (dict(groupings={"none": None}), r"groupings\['none'\] is None"),
        (dict(groupings={"labelled": pd.Series(GOOD["pairs"], index=list("uvwxyz"))}, y=pd.Series(Y, index=list("uvwxyq"))),
         r"y and groupings\['labelled'\] are labelled by different units: 'q'"),
        (dict(units=list("aabcde")), r"units must be unique; 'a' appears more than once"),
        (dict(method="waic"), r"method must be one of"),
        (dict(seed=-1), r"seed must be an integer >= 0"),
        (dict(model_options={"groups": GOOD["pairs"]}), r"model_options: 'groups' is set by compare_groupings"),
        (dict(fit_options={"seed": 3}), r"fit_options: 'seed' is set by compare_groupings"),
        (dict(model_options={"parameterization": "other"}), r"parameterization must be one of"),
    ],
)
def test_bad_input_raises_value_error(kwargs, match):
    args = {"y": Y, "se": SE, "groupings": GOOD, **kwargs}
    with pytest.raises(ValueError, match=match):
        compare_groupings(args.pop("y"), args.pop("se"), args.pop("groupings"), **args)


def test_unknown_fit_options_are_refused_before_any_fit():
    with pytest.raises(TypeError, match="fit\\(\\) got an unknown option 'draw'; did you mean 'draws'"):
        compare_groupings(Y, SE, GOOD, fit_options={"draw": 10})
    with pytest.raises(TypeError, match="compare_groupings\\(\\) got an unexpected keyword argument 'draws'"):
        compare_groupings(Y, SE, GOOD, draws=10)


def test_grouping_names_must_be_strings():
    with pytest.raises(TypeError, match="names must be non-empty strings; got 3"):
        compare_groupings(Y, SE, {3: GOOD["pairs"]})
    with pytest.raises(TypeError, match="groupings must be a mapping"):
        compare_groupings(Y, SE, [GOOD["pairs"]])


def test_group_labels_may_be_any_hashable_and_categorical():
    # validation passes (no exception before fitting) for ints and pandas categoricals: checked via
    # the private helper so that no model is fitted
    from hbm_lib.selection import _check_groupings

    out = _check_groupings(
        {"ints": [1, 1, 2, 2, 3, 3], "cat": pd.Categorical(list("xxyyxy"))}, 6, BASELINE
    )
    assert list(out) == ["ints", "cat"]
    assert out["cat"].tolist() == list("xxyyxy")


def test_exact_loo_warns_when_a_unit_moves_the_posterior_off_the_grid():
    # the outlier of the Pareto-k test: with it, sigma_unit is about 1; without it, about 0, far
    # outside the grid chosen for all the data, so its exact leave-one-out value cannot be trusted
    from hbm_lib import fit, hierarchical_normal

    rng = np.random.default_rng(5)
    y = np.r_[rng.normal(0.0, 0.1, 30), 5.0]
    se = np.r_[np.full(30, 0.1), 0.01]
    idata = fit(hierarchical_normal(y, se), method="grid", draws=100, seed=0)
    with pytest.warns(UserWarning, match="lies at the edge of the grid"):
        loo(idata)


def test_choose_grouping_rules():
    from hbm_lib.selection import between_group_chi2, choose_grouping

    s, _ = simulate_creator_summaries(150, 5, sigma_genre=0.4, sigma_creator=0.15, min_users=300, seed=3)
    rng = np.random.default_rng(0)
    groupings = {"genre": s["genre"], "noise": rng.integers(0, 4, len(s)).astype(str)}
    exact = {"method": "grid"}
    by_loo = choose_grouping(s["estimate"], s["se"], groupings, fit_options=exact)
    assert by_loo.chosen == "genre" and by_loo.rule == "loo" and by_loo.statistic["single population"] == 0.0
    assert by_loo.statistic["genre"] > 2.0 and by_loo.comparison is not None
    # a grouping that cannot help is not chosen: the baseline stays
    noise_only = choose_grouping(s["estimate"], s["se"], {"noise": groupings["noise"]}, fit_options=exact)
    assert noise_only.chosen == "single population"
    # an impossible margin keeps the baseline even when genre leads
    assert choose_grouping(s["estimate"], s["se"], groupings, fit_options=exact, margin=1e6).chosen == "single population"
    by_chi2 = choose_grouping(s["estimate"], s["se"], groupings, rule="largest_chi2")
    assert by_chi2.chosen == "genre" and by_chi2.comparison is None
    assert by_chi2.statistic["noise"] == pytest.approx(between_group_chi2(s["estimate"], s["se"], groupings["noise"]))
    with pytest.raises(ValueError, match="rule must be one of"):
        choose_grouping(s["estimate"], s["se"], groupings, rule="aic")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        choose_grouping(s["estimate"], s["se"], groupings, margin=-1.0)

"""Tests of hbm_lib.inference: fit's options, check_convergence, posterior summaries.

Fast tests use hand-made draws or models that need no sampling (the conjugate beta-binomial);
tests marked ``slow`` sample with NUTS.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

from hbm_lib import beta_binomial, eight_schools, hierarchical_normal
from hbm_lib.inference import FIT_DEFAULTS, check_convergence, fit, posterior_summary, weighted_mean

Y3, SE3 = [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(draws=0), "draws"),
        (dict(draws=10.5), "draws"),
        (dict(tune=-1), "tune"),
        (dict(chains=0), "chains"),
        (dict(cores=0), "cores"),
        (dict(target_accept=1.0), "target_accept"),
        (dict(target_accept=0.0), "target_accept"),
        (dict(seed=None), "seed"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(sampler_options={"return_inferencedata": False}), "return_inferencedata"),
        (dict(sampler_options={"idata_kwargs": {"log_likelihood": True}}), "idata_kwargs"),
        (dict(sampler_options={"random_seed": 1}), "random_seed' is set by fit itself; pass it to fit directly \\(as seed\\)"),
        (dict(sampler_options=[("init", "auto")]), "sampler_options must be a mapping"),
        (dict(retries={"draws": 10}), "retries must be a sequence"),
        (dict(retries=[5]), r"retries\[0\] must be a mapping"),
        (dict(retries=[{"draws": 0}]), "draws"),
        (dict(keep_theta="no"), "keep_theta"),
        (dict(nuts_sampler="numpyro"), "nuts_sampler"),
        (dict(nuts_sampler=None), "nuts_sampler"),
    ],
)
def test_fit_rejects_bad_settings_before_sampling(kwargs, match):
    model = hierarchical_normal(Y3, SE3)
    with pytest.raises((ValueError, TypeError), match=match):
        fit(model, **kwargs)


@pytest.mark.parametrize(
    "option, hint",
    [
        ("draw", "did you mean 'draws'"),
        ("random_seed", "did you mean 'seed'"),
        ("target_acept", "did you mean 'target_accept'"),
        ("foo", "it accepts"),
    ],
)
def test_fit_refuses_unknown_options_naming_the_closest(option, hint):
    # a misspelled option must not be passed on to pm.sample and silently ignored
    model = beta_binomial([3, 7], [10, 10], a=1.0, b=1.0)
    with pytest.raises(TypeError, match=f"fit\\(\\) got an unknown option '{option}'; {hint}"):
        fit(model, **{option: 50})
    with pytest.raises(TypeError, match=r"fit\(retries\[0\]\) got an unknown option 'draw'"):
        fit(model, retries=[{"draw": 50}])


def test_fit_defaults_are_the_shared_ones():
    import inspect

    signature = inspect.signature(fit)
    for name, value in FIT_DEFAULTS.items():
        assert signature.parameters[name].default == value, name


def test_fit_rejects_foreign_model():
    with pm.Model() as model:
        pm.Normal("x")
    with pytest.raises(ValueError, match="model must be a model built by"):
        fit(model)


# --------------------------------------------------------------------------------------------
# check_convergence on hand-made draws (no sampling)


def _fake_idata(posterior: dict, diverging: np.ndarray | None = None) -> xr.DataTree:
    groups = {"posterior": posterior}
    if diverging is not None:
        groups["sample_stats"] = {"diverging": diverging}
    return az.from_dict(groups)


def test_check_convergence_passes_independent_draws():
    rng = np.random.default_rng(0)
    idata = _fake_idata(
        {"mu": rng.normal(size=(4, 1000)), "theta": rng.normal(size=(4, 1000, 3)), "theta_offset": rng.normal(size=(4, 1000, 3))},
        diverging=np.zeros((4, 1000), dtype=bool),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = check_convergence(idata)
    assert list(out.index) == ["mu", "theta"]  # *_offset left out by default
    assert list(out.columns) == ["r_hat", "ess_bulk", "ess_tail", "divergences", "checked", "ok"]
    assert out["ok"].all() and (out["divergences"] == 0).all()


def test_check_convergence_flags_chains_that_disagree():
    rng = np.random.default_rng(1)
    stuck = rng.normal(size=(4, 1000, 2))
    stuck[0, :, 1] += 3.0  # one chain of one element elsewhere: R-hat far above 1.01
    idata = _fake_idata({"mu": rng.normal(size=(4, 1000)), "tau": stuck})
    with pytest.warns(UserWarning, match=r"tau has not converged: r_hat = \d"):
        out = check_convergence(idata)
    assert out.loc["tau", "r_hat"] > 1.01
    assert out.loc["mu", "ok"] and not out.loc["tau", "ok"]


def test_check_convergence_counts_divergences():
    rng = np.random.default_rng(2)
    diverging = np.zeros((4, 1000), dtype=bool)
    diverging[1, [5, 50, 500]] = True
    idata = _fake_idata({"mu": rng.normal(size=(4, 1000))}, diverging=diverging)
    with pytest.warns(UserWarning, match="3 divergent transitions"):
        out = check_convergence(idata)
    assert out.loc["mu", "divergences"] == 3 and not out.loc["mu", "ok"]
    quiet = check_convergence(idata, warn=False)  # no warning, same table
    pd.testing.assert_frame_equal(quiet, out)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(var_names=["nope"]), "var_names"),
        (dict(var_names=[]), "var_names"),
        (dict(rhat_max=0.99), "rhat_max"),
        (dict(ess_min=-1), "ess_min"),
    ],
)
def test_check_convergence_bad_arguments(kwargs, match):
    idata = _fake_idata({"mu": np.random.default_rng(3).normal(size=(2, 50))})
    with pytest.raises(ValueError, match=match):
        check_convergence(idata, **kwargs)




# --------------------------------------------------------------------------------------------
# check_convergence knows exact draws and constants (no false alarms on the library's own output)


def test_check_convergence_does_not_flag_exact_grid_draws():
    # one chain of independent exact draws: no R-hat to compute, and no warning at all
    idata = fit(beta_binomial([30, 50, 55, 60], [100] * 4), method="grid", chains=1, draws=4000, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = check_convergence(idata)
    assert table["ok"].all(), table
    assert (table["checked"] == "independent draws").all()
    assert table["r_hat"].isna().all()
    assert (table["ess_bulk"] == 4000).all() and (table["ess_tail"] == 4000).all()  # 4000 independent draws
    # and they are independent: ArviZ's own estimate of the ESS agrees (iid draws: about 4000, with
    # an estimator noise of a few percent)
    ess = az.ess(idata["posterior"].to_dataset(), method="bulk")
    assert all(float(ess[v].min()) > 3400 for v in ("phi", "log_kappa", "rate"))


def test_check_convergence_treats_fixed_parameters_as_constants():
    # the conjugate route: a and b fixed, so phi, kappa, a, b do not vary; rate is exact
    idata = fit(beta_binomial([3, 7], [10, 10], a=1.0, b=1.0), draws=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0, no UserWarning
        table = check_convergence(idata)
    assert table.loc[["phi", "log_kappa", "kappa", "a", "b"], "checked"].eq("constant").all()
    assert table.loc["rate", "checked"] == "independent draws"
    assert table["ok"].all()


def test_check_convergence_still_requires_enough_exact_draws():
    idata = fit(beta_binomial([30, 50, 55, 60], [100] * 4), method="grid", chains=1, draws=100, seed=1)
    with pytest.warns(UserWarning) as record:
        table = check_convergence(idata)
    messages = [str(w.message) for w in record]
    assert any(m.startswith("rate has not converged: ess_bulk = ") for m in messages), messages
    assert not table.loc["rate", "ok"] and table["r_hat"].isna().all()


def test_check_convergence_skips_constant_elements_of_a_varying_variable():
    rng = np.random.default_rng(4)
    theta = rng.normal(size=(4, 1000, 3))
    theta[..., 1] = 2.0  # one element pinned
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = check_convergence(az.from_dict({"posterior": {"theta": theta}}))
    assert table.loc["theta", "checked"] == "mcmc" and table.loc["theta", "ok"]
    assert np.isfinite(table.loc["theta", "r_hat"])


# --------------------------------------------------------------------------------------------
# posterior summaries


def _labelled(draws: np.ndarray, labels, dim="unit") -> xr.DataTree:
    return az.from_dict({"posterior": {"theta": draws}}, coords={dim: list(labels)}, dims={"theta": [dim]})


def test_posterior_summary_is_the_mean_sd_and_equal_tailed_interval():
    rng = np.random.default_rng(5)
    draws = rng.gamma(2.0, size=(2, 3000, 3))
    table = posterior_summary(_labelled(draws, "abc", dim="school"), prob=0.9)
    assert table.index.name == "school" and table.index.tolist() == ["a", "b", "c"]
    flat = draws.reshape(-1, 3)
    np.testing.assert_allclose(table["estimate"], flat.mean(axis=0))
    np.testing.assert_allclose(table["sd"], flat.std(axis=0, ddof=1))
    np.testing.assert_allclose(table["lower"], np.quantile(flat, 0.05, axis=0))
    np.testing.assert_allclose(table["upper"], np.quantile(flat, 0.95, axis=0))


def test_posterior_summary_feeds_the_metrics():
    from hbm_lib import compare_methods, no_pooling

    d = eight_schools().set_index("school")
    draws = np.random.default_rng(6).normal(d["y"].to_numpy() / 2, 5.0, size=(2, 1000, 8))
    summary = posterior_summary(_labelled(draws, d.index, dim="school"))
    truth = pd.Series(5.0, index=d.index[::-1])  # another order: aligned by label
    table = compare_methods({"posterior": summary, "no pooling": no_pooling(d["y"], d["sigma"])}, truth)
    assert table["method"].tolist() == ["posterior", "no pooling"]


def test_posterior_summary_scalar_and_bad_input():
    idata = az.from_dict({"posterior": {"mu": np.zeros((2, 10)), "m": np.zeros((2, 10, 2, 2))}})
    assert posterior_summary(idata, "mu").index.tolist() == ["mu"]
    with pytest.raises(ValueError, match="var: 'nope'"):
        posterior_summary(idata, "nope")
    with pytest.raises(ValueError, match="at most one besides the draws"):
        posterior_summary(idata, "m")
    with pytest.raises(ValueError, match="prob"):
        posterior_summary(idata, "mu", prob=95)


def test_weighted_mean_aligns_weights_by_label():
    draws = np.random.default_rng(7).normal([0.0, 10.0, 20.0], 1.0, size=(2, 4000, 3))
    idata = _labelled(draws, ["a", "b", "c"])
    by_position = weighted_mean(idata, [1.0, 0.0, 3.0])
    by_label = weighted_mean(idata, pd.Series({"c": 3.0, "a": 1.0, "b": 0.0}))
    pd.testing.assert_frame_equal(by_position, by_label)
    flat = draws.reshape(-1, 3)
    assert by_position["estimate"].item() == pytest.approx((flat[:, 0] + 3 * flat[:, 2]).mean() / 4)
    with pytest.raises(ValueError, match="'d' is not a label of theta"):
        weighted_mean(idata, pd.Series({"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}))
    with pytest.raises(ValueError, match="non-negative and not all zero"):
        weighted_mean(idata, [0.0, 0.0, 0.0])


# --------------------------------------------------------------------------------------------
# retries (slow)


@pytest.mark.slow
def test_retries_refit_until_the_fit_passes():
    d = eight_schools()
    model = hierarchical_normal(d["y"], d["sigma"], units=d["school"], parameterization="non_centered")
    # 20 draws per chain cannot reach 400 effective draws; the retry with 1000 can
    idata = fit(model, draws=20, tune=200, retries=[{"draws": 1000, "tune": 1000}])
    assert idata["posterior"].attrs["fit_attempts"] == 2
    assert idata["posterior"].sizes["draw"] == 1000
    assert check_convergence(idata, warn=False)["ok"].all()
    # no retry needed: one attempt
    assert fit(model, retries=[{"draws": 3000}])["posterior"].attrs["fit_attempts"] == 1

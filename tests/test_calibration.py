"""Tests of hbm_lib.calibration: simulation-based calibration (SBC) of the library's models.

Input checks and reproducibility first; then the band's own calibration; then one SBC smoke test
per model family, and planted bugs that SBC must flag.

Thresholds for a correct fitter (``assert_calibrated``). If the fitter is right, each parameter's
ranks are independent draws from the discrete uniform distribution on ``0 .. L``, so the count of
ranks in a bin holding ``m`` of the ``L + 1`` levels is ``Binomial(n_sims, m / (L + 1))`` and the
chi-square p-value is (approximately) uniform. With ``K`` parameters and ``B`` bins, a smoke test
spends a family-wise false-alarm probability of 1% by the union bound: 0.25% on the ``K``
p-values (each must exceed ``0.0025 / K``), 0.25% on the ``K * B`` bin counts (each inside its
two-sided binomial interval of level ``1 - 0.0025 / (K B)``) and 0.5% on the ``K`` ECDF bands
(run with ``band_prob = 1 - 0.005 / K``). Nothing here was widened to make a test pass; seeds are
fixed, so the tests are deterministic.
"""

from __future__ import annotations

import functools

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hbm_lib.calibration import CalibrationResult, _band, plot_calibration, simulation_based_calibration
from hbm_lib.inference import fit
from hbm_lib.models import beta_binomial, hierarchical_normal, varying_slopes_logistic

matplotlib.use("agg")

SE = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])  # Eight Schools' standard errors
GROUPS = np.array(["a", "a", "a", "b", "b", "b", "c", "c"])
GRID = {"method": "grid", "draws": 100, "chains": 1}
FAMILY_ALPHA = 0.01


def two_level(rng, sigma_scale=5.0):
    """The prior of ``hierarchical_normal``'s defaults: mu ~ N(0, 10), sigma_unit ~ HN(5)."""
    mu, sigma = rng.normal(0.0, 10.0), abs(rng.normal(0.0, sigma_scale))
    theta = rng.normal(mu, sigma, size=len(SE))
    return {"y": rng.normal(theta, SE), "se": SE}, {"mu": mu, "sigma_unit": sigma, "theta": theta}


def three_level(rng):
    mu, sigma_unit, sigma_group = rng.normal(0.0, 10.0), abs(rng.normal(0.0, 5.0)), abs(rng.normal(0.0, 5.0))
    mu_group = rng.normal(mu, sigma_group, size=3)
    theta = rng.normal(mu_group[[0, 0, 0, 1, 1, 1, 2, 2]], sigma_unit)
    truth = {"mu": mu, "sigma_unit": sigma_unit, "sigma_group": sigma_group, "mu_group": mu_group, "theta": theta}
    return {"y": rng.normal(theta, SE), "se": SE, "groups": GROUPS}, truth


TRIALS = np.array([5, 10, 20, 40, 80, 160])


def fixed_beta(rng):
    """Rates from Beta(2, 6), the prior of ``beta_binomial(..., a=2, b=6)``."""
    rate = rng.beta(2.0, 6.0, size=len(TRIALS))
    return {"successes": rng.binomial(TRIALS, rate), "trials": TRIALS}, {"rate": rate}


def proper_hyperprior(rng):
    """A proper prior for (phi, log_kappa): phi ~ Beta(2, 2), log_kappa ~ N(2.5, 0.75). Parameters
    and data are redrawn together until some unit has 0 < successes < trials (data the improper
    model can fit; rare): a condition on the data alone, which keeps the ranks uniform."""
    while True:
        phi, log_kappa = rng.beta(2.0, 2.0), rng.normal(2.5, 0.75)
        kappa = np.exp(log_kappa)
        rate = rng.beta(phi * kappa, (1 - phi) * kappa, size=len(TRIALS))
        successes = rng.binomial(TRIALS, rate)
        if ((successes > 0) & (successes < TRIALS)).any():
            return {"successes": successes, "trials": TRIALS}, {"phi": phi, "log_kappa": log_kappa, "rate": rate}


def reweighted_grid(model, seed, n_draws=4000):
    """The exact grid posterior under the improper hyperprior p(phi, log_kappa) ∝ exp(-log_kappa / 2),
    importance-resampled to the proper prior of ``proper_hyperprior``: weights q / p."""
    posterior = fit(model, method="grid", chains=1, draws=n_draws, seed=seed, keep_log_likelihood=False)["posterior"]
    phi, log_kappa = (posterior[k].to_numpy().ravel() for k in ("phi", "log_kappa"))
    log_w = stats.beta.logpdf(phi, 2.0, 2.0) + stats.norm.logpdf(log_kappa, 2.5, 0.75) + 0.5 * log_kappa
    w = np.exp(log_w - log_w.max())
    pick = np.random.default_rng(seed).choice(n_draws, size=n_draws, p=w / w.sum())
    return posterior.to_dataset().isel(draw=pick).assign_coords(draw=np.arange(n_draws)).drop_attrs()


def assert_calibrated(result: CalibrationResult) -> None:
    """The checks of the module docstring, at a family-wise false-alarm probability of 1%."""
    k = result.ranks.shape[1]
    n, levels = len(result.ranks), result.ranked_draws + 1
    assert result.band_prob == pytest.approx(1 - FAMILY_ALPHA / 2 / k)
    low_p = result.summary["p_value"] <= FAMILY_ALPHA / 4 / k
    assert not low_p.any(), result.summary[low_p]
    bins = int(result.summary["bins"].iloc[0])
    sizes = np.array([len(part) for part in np.array_split(np.arange(levels), bins)])
    edges = np.concatenate([[0], np.cumsum(sizes)])
    a = FAMILY_ALPHA / 4 / (k * bins)
    lo, hi = stats.binom.ppf(a / 2, n, sizes / levels), stats.binom.isf(a / 2, n, sizes / levels)
    for name in result.ranks:
        counts = np.histogram(result.ranks[name], bins=edges)[0]
        assert np.all((counts >= lo) & (counts <= hi)), (name, counts, lo, hi)
    assert result.summary["in_band"].all(), result.summary


def sbc(builder, simulator, k, **kwargs):
    """SBC with the smoke tests' band level (see ``assert_calibrated``)."""
    kwargs.setdefault("fit_options", GRID)
    return simulation_based_calibration(builder, simulator, band_prob=1 - FAMILY_ALPHA / 2 / k, **kwargs)


# --------------------------------------------------------------------------------------------
# input checks


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="n_sims must be an integer >= 1"):
        simulation_based_calibration(hierarchical_normal, two_level, n_sims=0, fit_options=GRID)
    with pytest.raises(ValueError, match="ranked_draws must be an integer >= 1"):
        simulation_based_calibration(hierarchical_normal, two_level, ranked_draws=0, fit_options=GRID)
    with pytest.raises(ValueError, match=r"1 x 50 = 50 posterior draws, fewer than ranked_draws = 99"):
        simulation_based_calibration(hierarchical_normal, two_level, fit_options={**GRID, "draws": 50})
    with pytest.raises(ValueError, match="band_prob"):
        simulation_based_calibration(hierarchical_normal, two_level, band_prob=1.5, fit_options=GRID)
    with pytest.raises(TypeError, match="builder must be callable"):
        simulation_based_calibration("hierarchical_normal", two_level)
    with pytest.raises(TypeError, match="progress must be callable"):
        simulation_based_calibration(hierarchical_normal, two_level, progress=True, fit_options=GRID)


def test_rejects_bad_fit_options():
    with pytest.raises(TypeError, match="fit_options got an unknown option 'draw'; did you mean 'draws'"):
        simulation_based_calibration(hierarchical_normal, two_level, fit_options={"method": "grid", "draw": 200})
    with pytest.raises(ValueError, match="seed is set per replication"):
        simulation_based_calibration(hierarchical_normal, two_level, fit_options={**GRID, "seed": 1})
    with pytest.raises(ValueError, match="with your own fitter"):
        simulation_based_calibration(hierarchical_normal, two_level, fit_options=GRID, fitter=lambda m, s: None)
    with pytest.raises(TypeError, match="fit_options must be a mapping"):
        simulation_based_calibration(hierarchical_normal, two_level, fit_options=["grid"])


def test_rejects_a_simulator_of_the_wrong_shape():
    def short_theta(rng):
        data, truth = two_level(rng)
        return data, {**truth, "theta": truth["theta"][:7]}

    with pytest.raises(ValueError, match=r"truth of 'theta' has shape \(7,\) in replication 0.*shape \(8,\)"):
        simulation_based_calibration(hierarchical_normal, short_theta, n_sims=2, fit_options=GRID)
    with pytest.raises(TypeError, match="simulator must return a tuple"):
        simulation_based_calibration(hierarchical_normal, lambda rng: two_level(rng)[0], n_sims=2, fit_options=GRID)
    with pytest.raises(ValueError, match="truth of 'mu' is not finite"):
        simulation_based_calibration(
            hierarchical_normal, lambda rng: (two_level(rng)[0], {"mu": np.nan}), n_sims=2, fit_options=GRID
        )


def test_rejects_data_the_builder_does_not_take():
    def misnamed(rng):
        data, truth = two_level(rng)
        return {"y": data["y"], "sd": data["se"]}, truth

    with pytest.raises(TypeError, match=r"builder did not accept the data simulated in replication 0 \(keywords \['sd', 'y'\]\)"):
        simulation_based_calibration(hierarchical_normal, misnamed, n_sims=2, fit_options=GRID)

    def negative_se(rng):
        data, truth = two_level(rng)
        return {**data, "se": -SE}, truth

    with pytest.raises(ValueError, match="builder did not accept.*se must be positive"):
        simulation_based_calibration(hierarchical_normal, negative_se, n_sims=2, fit_options=GRID)


def test_rejects_parameters_without_truth_or_posterior():
    with pytest.raises(ValueError, match="var_names: 'tau' has no true value"):
        simulation_based_calibration(hierarchical_normal, two_level, var_names="tau", n_sims=2, fit_options=GRID)
    with pytest.raises(ValueError, match="var_names: 'tau' is not in the posterior"):
        simulation_based_calibration(
            hierarchical_normal, lambda rng: (two_level(rng)[0], {"tau": 1.0}), n_sims=2, fit_options=GRID
        )


def test_rejects_a_fitter_with_too_few_draws():
    def few(model, seed):
        return fit(model, method="grid", draws=10, chains=1, seed=seed)

    with pytest.raises(ValueError, match="the fit returned 10 draws of 'mu', fewer than ranked_draws = 19"):
        simulation_based_calibration(hierarchical_normal, two_level, n_sims=2, ranked_draws=19, fitter=few)


# --------------------------------------------------------------------------------------------
# the result: layout, reproducibility


def test_result_layout_and_progress():
    calls = []
    result = simulation_based_calibration(
        hierarchical_normal, two_level, n_sims=12, ranked_draws=19, var_names=["sigma_unit", "theta"],
        fit_options=GRID, seed=3, progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(k, 12) for k in range(1, 13)]
    assert list(result.ranks.columns) == ["sigma_unit"] + [f"theta[{i}]" for i in range(8)]
    assert result.ranks.index.name == "replication" and len(result.ranks) == 12
    assert result.ranks.to_numpy().min() >= 0 and result.ranks.to_numpy().max() <= 19
    assert list(result.summary.index) == list(result.ranks.columns)
    assert result.summary.loc["theta[3]", "variable"] == "theta"
    assert (result.summary["bins"] == 2).all()  # 12 // 5 = 2 bins
    assert list(result.fits.columns) == ["seconds", "draws", "divergences", "ess_bulk_min", "r_hat_max"]
    assert (result.fits["draws"] == 100).all() and (result.fits["ess_bulk_min"] == 100).all()
    assert len(result.band) == 19 and np.allclose(result.band["z"], np.arange(1, 20) / 20)
    assert (result.band["lower"] <= result.band["z"]).all() and (result.band["z"] <= result.band["upper"]).all()
    ecdf = result.ecdf("sigma_unit")
    assert np.allclose(ecdf, [(result.ranks["sigma_unit"] < i).mean() for i in range(1, 20)])


def test_from_ranks_tests_saved_ranks_again():
    result = simulation_based_calibration(hierarchical_normal, two_level, n_sims=12, ranked_draws=19,
                                          fit_options=GRID, seed=4)
    saved = pd.DataFrame({name: " ".join(map(str, result.ranks[name])) for name in result.ranks}, index=[0])
    ranks = pd.DataFrame({name: np.array(saved[name].iloc[0].split(), dtype=int) for name in saved})
    again = CalibrationResult.from_ranks(ranks, 19)
    pd.testing.assert_frame_equal(again.summary, result.summary, check_names=False)
    pd.testing.assert_frame_equal(again.band, result.band)
    assert again.fits.shape == (12, 0)
    with pytest.raises(ValueError, match=r"whole numbers in 0 .. ranked_draws = 19"):
        CalibrationResult.from_ranks(ranks + 20, 19)
    with pytest.raises(ValueError, match="whole numbers"):
        CalibrationResult.from_ranks(ranks.astype(float), 19)
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        CalibrationResult.from_ranks(ranks.iloc[:0], 19)


def test_same_seed_same_result():
    kwargs = dict(n_sims=6, ranked_draws=19, fit_options=GRID)
    first = simulation_based_calibration(hierarchical_normal, two_level, seed=7, **kwargs)
    again = simulation_based_calibration(hierarchical_normal, two_level, seed=np.random.default_rng(7), **kwargs)
    other = simulation_based_calibration(hierarchical_normal, two_level, seed=8, **kwargs)
    pd.testing.assert_frame_equal(first.ranks, again.ranks)
    pd.testing.assert_frame_equal(first.summary, again.summary)
    pd.testing.assert_frame_equal(first.fits.drop(columns="seconds"), again.fits.drop(columns="seconds"))
    assert not first.ranks.equals(other.ranks)
    # replication i does not depend on how many follow it
    longer = simulation_based_calibration(hierarchical_normal, two_level, seed=7, **{**kwargs, "n_sims": 8})
    pd.testing.assert_frame_equal(longer.ranks.iloc[:6], first.ranks)


def test_ties_are_split_at_random():
    # a constant posterior (a and b fixed) ties with a true value equal to it: the rank is uniform
    # on 0 .. L, not always 0 or L
    def constant_truth(rng):
        data, truth = fixed_beta(rng)
        return data, {**truth, "a": 2.0}

    result = simulation_based_calibration(
        functools.partial(beta_binomial, a=2.0, b=6.0), constant_truth, n_sims=40, ranked_draws=9, fit_options=GRID
    )
    assert result.ranks["a"].nunique() > 5


@pytest.mark.parametrize("n, levels", [(40, 20), (200, 100)])
def test_band_holds_uniform_ranks_at_its_level(n, levels):
    # 2,000 sets of uniform ranks: the fraction inside the 95% band is Binomial(2000, 0.95) / 2000
    # if the band is right, sd 0.0049; we allow 4 sd (and the band's own simulation error is
    # smaller: its quantile is taken over 5,000 sets)
    z, lower, upper = _band(n, levels, 0.95)
    ranks = np.random.default_rng(11).integers(levels, size=(2000, n))
    ecdf = np.stack([np.cumsum(np.bincount(r, minlength=levels))[:-1] / n for r in ranks])
    inside = np.all((ecdf >= lower) & (ecdf <= upper), axis=1).mean()
    assert abs(inside - 0.95) < 4 * np.sqrt(0.95 * 0.05 / 2000)


# --------------------------------------------------------------------------------------------
# one smoke test per model family


def test_two_level_normal_grid_is_calibrated():
    result = sbc(hierarchical_normal, two_level, k=10, n_sims=60, ranked_draws=19, seed=101)
    assert_calibrated(result)


def test_three_level_normal_grid_is_calibrated():
    result = sbc(hierarchical_normal, three_level, k=14, n_sims=40, ranked_draws=19, seed=102)
    assert result.ranks.shape == (40, 14)
    assert_calibrated(result)


def test_beta_binomial_with_fixed_prior_is_calibrated():
    # beta_binomial's default hyperprior is improper, so nothing can be simulated from it; with a
    # and b fixed the prior of the rates is the proper Beta(2, 6) the simulator draws from
    builder = functools.partial(beta_binomial, a=2.0, b=6.0)
    result = sbc(builder, fixed_beta, k=6, n_sims=60, ranked_draws=19, seed=103)
    assert_calibrated(result)


def test_beta_binomial_hyperprior_grid_reweighted_to_a_proper_prior_is_calibrated():
    # the grid posterior under the improper hyperprior, importance-resampled to a proper prior
    # (weights q / p): calibrated for q's simulations if and only if the grid posterior is right
    # (up to the resampling's error, O(1 / ESS) with ESS in the hundreds here)
    result = sbc(beta_binomial, proper_hyperprior, k=8, n_sims=40, ranked_draws=19, fitter=reweighted_grid,
                 fit_options=None, seed=104)
    assert_calibrated(result)


@pytest.mark.slow
def test_two_level_normal_nuts_is_calibrated():
    builder = functools.partial(hierarchical_normal, parameterization="non_centered")
    options = {"draws": 100, "tune": 300, "chains": 2, "cores": 1, "nuts_sampler": "pymc"}
    result = sbc(builder, two_level, k=10, n_sims=20, ranked_draws=19, fit_options=options, seed=105)
    assert_calibrated(result)


N_GROUPS = 4
ROW_GROUP = np.repeat(np.arange(N_GROUPS), 2)
TREATED = np.tile([0, 1], N_GROUPS)


def logistic(rng):
    """The priors of ``varying_slopes_logistic``'s defaults: StudentT(3, 0, 1) means, HN(1) sds;
    four groups, two arms of 100 users each."""
    mu_alpha, mu_beta = rng.standard_t(3), rng.standard_t(3)
    sigma_alpha, sigma_beta = abs(rng.normal(0.0, 1.0)), abs(rng.normal(0.0, 1.0))
    alpha, beta = rng.normal(mu_alpha, sigma_alpha, N_GROUPS), rng.normal(mu_beta, sigma_beta, N_GROUPS)
    p = 1.0 / (1.0 + np.exp(-(alpha[ROW_GROUP] + beta[ROW_GROUP] * TREATED)))
    trials = np.full(2 * N_GROUPS, 100)
    data = {"successes": rng.binomial(trials, p), "trials": trials, "groups": ROW_GROUP, "treated": TREATED}
    truth = {"mu_alpha": mu_alpha, "sigma_alpha": sigma_alpha, "mu_beta": mu_beta, "sigma_beta": sigma_beta,
             "alpha": alpha, "beta": beta}
    return data, truth


@pytest.mark.slow
def test_varying_slopes_logistic_nuts_smoke():
    # NUTS recompiles the model for every replication (seconds each), so only a smoke test: 8
    # replications find a gross error (a wrong likelihood or link, a prior on the wrong scale)
    # and nothing subtle; benchmarks/calibration.py runs 60 (the appendix chapter shows them)
    options = {"draws": 150, "tune": 300, "chains": 2, "cores": 1, "nuts_sampler": "pymc", "target_accept": 0.95}
    result = sbc(varying_slopes_logistic, logistic, k=12, n_sims=8, ranked_draws=9, fit_options=options, seed=106)
    assert result.ranks.shape == (8, 12)
    assert_calibrated(result)


# --------------------------------------------------------------------------------------------
# planted bugs: SBC must flag them, by the rule a correct fitter passes (``assert_calibrated``):
# a p-value at most 0.0025 / K and an ECDF outside its band


def flagged(result: CalibrationResult, parameters) -> pd.Series:
    k = result.ranks.shape[1]
    rows = result.summary.loc[parameters]
    return (rows["p_value"] <= FAMILY_ALPHA / 4 / k) & ~rows["in_band"]


def test_flags_a_model_whose_prior_differs_from_the_simulation():
    # the data come from sigma_unit ~ HN(5), the model says HN(1): the truth sits above the
    # posterior of sigma_unit far more often than it should
    builder = functools.partial(hierarchical_normal, sigma_unit_prior=("half_normal", 1.0))
    result = simulation_based_calibration(builder, two_level, n_sims=60, ranked_draws=19, fit_options=GRID, seed=106)
    assert flagged(result, ["sigma_unit"]).all()
    assert (result.ranks["sigma_unit"] == 19).mean() > 0.5


def test_flags_a_posterior_that_is_too_narrow():
    # an approximation that halves the posterior sd of theta (as a plug-in of the between-unit sd
    # can): the truth falls in the tails, a U shape in every theta
    def overconfident(model, seed):
        posterior = fit(model, method="grid", draws=100, chains=1, seed=seed)["posterior"].to_dataset()
        theta = posterior["theta"]
        return posterior.assign(theta=theta.mean("draw") + 0.5 * (theta - theta.mean("draw")))

    result = simulation_based_calibration(hierarchical_normal, two_level, n_sims=100, ranked_draws=19,
                                          fitter=overconfident, seed=107)
    thetas = [f"theta[{i}]" for i in range(8)]
    assert flagged(result, thetas).all(), result.summary
    assert not flagged(result, ["mu", "sigma_unit"]).any()  # left alone, and not flagged
    extreme = result.ranks.filter(like="theta").isin([0, 19]).to_numpy().mean()
    # a rank at either end (2 of 20 levels) has probability 0.1 for a correct fitter; with the sd
    # halved the truth's quantile is Phi(2 z), at an end when |z| > 0.82: probability 0.41
    assert extreme > 0.25


# --------------------------------------------------------------------------------------------
# the figure


def test_plot_calibration():
    builder = functools.partial(hierarchical_normal, sigma_unit_prior=("half_normal", 1.0))
    result = simulation_based_calibration(builder, two_level, n_sims=30, ranked_draws=19, fit_options=GRID,
                                          var_names=["mu", "sigma_unit"], seed=108)
    axes = plot_calibration(result)
    assert len(axes) == 2 and axes[1].get_title().startswith("sigma_unit")
    assert axes[1].title.get_color() == "tab:red"  # out of its band
    assert len(plot_calibration(result, "mu")) == 1
    with pytest.raises(ValueError, match="axes: 1 panels for 2 parameters"):
        plot_calibration(result, axes=axes[0])
    with pytest.raises(ValueError, match="'tau' was not checked"):
        result.ecdf("tau")
    with pytest.raises(TypeError, match="result must be a CalibrationResult"):
        plot_calibration(result.ranks)
    matplotlib.pyplot.close("all")

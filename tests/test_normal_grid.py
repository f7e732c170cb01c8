"""Tests of fit(method="grid") for the hierarchical normal model (hbm_lib.models._normal_grid).

The grid is checked against a brute-force dense grid of the PyMC model's own log density, against
the published Eight Schools reference, against NUTS on the marginal model (slow), for invariance to
the order of the units, and for the layout downstream functions rely on. Tolerances: the grid's
own target is 1e-4 posterior sds; the dense references have errors of order 1e-3 sds, so 0.01 sds
is the bar against them.
"""

from __future__ import annotations

import math
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hbm_lib import check_convergence, eight_schools, fit, hierarchical_normal, posterior_summary
from hbm_lib.models._normal_grid import NormalPosterior, log_sd_prior, quadrature
from hbm_lib.models._registry import spec_of

TINY = dict(
    y=np.array([1.3, -0.4, 2.9, 5.1, 0.2, -3.0, 4.4, 0.9]),
    se=np.array([0.8, 1.5, 1.1, 2.0, 0.6, 1.7, 1.0, 1.2]),
    groups=np.array(["a", "a", "b", "b", "b", "c", "c", "c"]),
)
PRIORS = [("half_normal", 2.0), ("half_cauchy", 1.0), ("uniform", 10.0)]


def _model(three_level=True, prior=("half_normal", 2.0), **kwargs):
    groups = TINY["groups"] if three_level else None
    return hierarchical_normal(TINY["y"], TINY["se"], groups=groups, mu_prior_mean=0.5, mu_prior_sd=3.0,
                               sigma_unit_prior=prior, sigma_group_prior=prior, **kwargs)


@pytest.mark.parametrize("prior", PRIORS, ids=[p[0] for p in PRIORS])
@pytest.mark.parametrize("three_level", [True, False], ids=["three_levels", "two_levels"])
def test_grid_density_is_the_models_own(three_level, prior):
    # the NumPy log posterior of the grid equals PyMC's log density of the marginal model on the
    # log scale (Jacobian included), up to one constant
    model = _model(three_level, prior)
    post = NormalPosterior(spec_of(model))
    logp = model.compile_logp(jacobian=True)
    names = [v.name for v in model.value_vars]
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(6):
        s_u, s_g = rng.uniform(-2.0, 1.5, size=2)
        if prior[0] == "uniform":
            transform = lambda s: math.log(math.exp(s) / (prior[1] - math.exp(s)))  # noqa: E731 (interval)
        else:
            transform = lambda s: s  # noqa: E731 (log)
        point = {names[0]: transform(s_u)}
        if three_level:
            point[names[1]] = transform(s_g)
        pymc = logp(point)
        if prior[0] == "uniform":  # PyMC's interval Jacobian differs from the log one by log(1 - x/b)
            pymc -= sum(math.log(1 - math.exp(s) / prior[1]) for s in ([s_u, s_g] if three_level else [s_u]))
        ours = post.log_density(np.array([s_u]), np.array([s_g if three_level else -np.inf]))[0, 0]
        diffs.append(ours - pymc)
    np.testing.assert_allclose(diffs, diffs[0], atol=1e-8)


def _dense(model, size=600):
    """Posterior means of log sigmas, mu and theta on a dense grid around the quadrature's box."""
    spec = spec_of(model)
    post = NormalPosterior(spec)
    q = quadrature(post)
    lo_u, hi_u = q.box["u"]
    s_u = np.linspace(lo_u, hi_u, size)
    s_g = np.linspace(*q.box["g"], size) if spec.three_level else np.array([-np.inf])
    logp = post.log_density(s_u, s_g)
    mass = np.exp(logp - logp.max())
    return s_u, s_g, mass / mass.sum(), q


@pytest.mark.parametrize("three_level", [True, False], ids=["three_levels", "two_levels"])
def test_grid_matches_a_dense_grid(three_level):
    model = _model(three_level)
    s_u, s_g, mass, _ = _dense(model)
    idata = fit(model, method="grid")
    post = idata["posterior"]
    ref_mean_u = float(mass.sum(axis=1) @ s_u)
    ref_sd_u = math.sqrt(float(mass.sum(axis=1) @ (s_u - ref_mean_u) ** 2))
    # the draws: Monte Carlo error of 4000 independent draws is sd / 63, so 4 sd / 63 at most
    draws_u = np.log(post["sigma_unit"].to_numpy().ravel())
    assert abs(draws_u.mean() - ref_mean_u) < 4 * ref_sd_u / math.sqrt(draws_u.size)
    # the exact moments of theta against the same mixture computed on the dense grid
    exact = idata["exact_moments"]
    dense_theta = _dense_theta_mean(model, s_u, s_g, mass)
    sd = exact["theta_sd"].to_numpy()
    np.testing.assert_array_less(np.abs(exact["theta_mean"].to_numpy() - dense_theta), 0.01 * sd)


def _dense_theta_mean(model, s_u, s_g, mass):
    from hbm_lib.models._normal_grid import Quadrature, exact_moments

    spec = spec_of(model)
    q = Quadrature(s_u, s_g, mass, {}, len(s_u), 0.0)
    return exact_moments(NormalPosterior(spec), q, True)["theta_mean"]


def test_eight_schools_matches_the_posteriordb_reference():
    # posteriordb's eight_schools_noncentered reference (mu ~ N(0, 5), tau ~ half-Cauchy(5)): posterior
    # means mu 4.41 and tau 3.60 from 10,000 draws, so their own Monte Carlo sds are about 0.03
    d = eight_schools()
    model = hierarchical_normal(d["y"], d["sigma"], units=d["school"], mu_prior_sd=5.0, sigma_unit_prior=("half_cauchy", 5.0))
    idata = fit(model, method="grid")
    assert float(idata["exact_moments"]["mu_mean"]) == pytest.approx(4.41, abs=0.06)
    assert float(idata["posterior"]["sigma_unit"].mean()) == pytest.approx(3.60, abs=0.12)  # + MC error of the draws


def test_invariant_to_the_order_of_the_units():
    model = _model()
    perm = np.random.default_rng(3).permutation(len(TINY["y"]))
    shuffled = hierarchical_normal(TINY["y"][perm], TINY["se"][perm], groups=TINY["groups"][perm], units=np.arange(8)[perm],
                                   mu_prior_mean=0.5, mu_prior_sd=3.0, sigma_unit_prior=("half_normal", 2.0),
                                   sigma_group_prior=("half_normal", 2.0))
    a = fit(model, method="grid")["exact_moments"]
    b = fit(shuffled, method="grid")["exact_moments"]
    np.testing.assert_allclose(b["theta_mean"].sel(unit=a["unit"]), a["theta_mean"], rtol=1e-9)
    np.testing.assert_allclose(b["mu_group_mean"].sel(group=a["group"]), a["mu_group_mean"], rtol=1e-9)
    assert float(b["mu_mean"]) == pytest.approx(float(a["mu_mean"]), rel=1e-9)


def test_layout_matches_a_nuts_fit_and_downstream_functions_work():
    model = _model(unit_dim="school", group_dim="district")
    idata = fit(model, method="grid", chains=2, draws=300, seed=5)
    post = idata["posterior"]
    assert set(post.data_vars) == {"sigma_unit", "sigma_group", "mu", "mu_group", "theta"}
    assert post["theta"].dims == ("chain", "draw", "school") and post["theta"].shape == (2, 300, 8)
    assert post["mu_group"].dims == ("chain", "draw", "district")
    assert idata["log_likelihood"]["y"].shape == (2, 300, 8)
    mass = idata["grid"]["mass"]
    assert mass.dims == ("log_sigma_unit", "log_sigma_group") and float(mass.sum()) == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = check_convergence(idata)  # no warning about the library's own exact draws
    # LOO reads the log-likelihood group (with 600 draws of 8 units a Pareto-k warning may come; not this test's business)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.isfinite(az.loo(idata).elpd)
    assert (table["checked"] == "independent draws").all() and table["r_hat"].isna().all()
    summary = posterior_summary(idata)
    exact = idata["exact_moments"]
    # the summary of a grid fit reports the exact mean and sd; the draws' own means agree with them
    # within 4 Monte Carlo sds (600 draws), and the interval comes from the draws
    np.testing.assert_array_equal(summary["estimate"], exact["theta_mean"])
    np.testing.assert_array_equal(summary["sd"], exact["theta_sd"])
    draw_means = post["theta"].mean(("chain", "draw")).to_numpy()
    assert (np.abs(draw_means - exact["theta_mean"].to_numpy()) < 4 * exact["theta_sd"].to_numpy() / math.sqrt(600)).all()
    np.testing.assert_allclose(summary["lower"], post["theta"].quantile(0.025, ("chain", "draw")))
    assert summary.index.name == "school"
    # same seed, same draws; another seed, other draws
    xr.testing.assert_identical(fit(model, method="grid", chains=2, draws=300, seed=5)["posterior"], post)
    assert not np.array_equal(fit(model, method="grid", chains=2, draws=300, seed=6)["posterior"]["mu"], post["mu"])


def test_draw_budget_leaves_theta_draws_out_with_a_warning():
    model = _model()
    with pytest.warns(UserWarning, match="exceed draw_budget"):
        idata = fit(model, method="grid", draw_budget=1000)
    assert "theta" not in idata["posterior"] and "log_likelihood" not in idata.children
    assert "theta_mean" in idata["exact_moments"]  # the exact moments stay
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, method="grid", draw_budget=1000, keep_theta=False, keep_log_likelihood=False)


def test_grid_refuses_what_does_not_apply():
    from hbm_lib import varying_slopes_logistic

    logistic = varying_slopes_logistic([3, 5, 6, 6], [10] * 4, ["a", "a", "b", "b"], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="method='grid' needs a model whose posterior reduces"):
        fit(logistic, method="grid")
    with pytest.raises(ValueError, match="retries and sampler_options are options of NUTS"):
        fit(_model(), method="grid", retries=[{"draws": 10}])
    with pytest.raises(ValueError, match="method must be one of"):
        fit(_model(), method="laplace")


def test_priors_are_the_models():
    for prior in PRIORS:
        x = np.array([0.5, 2.0, 9.0])
        got = log_sd_prior(x, prior)
        assert np.all(np.isfinite(got))
    assert log_sd_prior(np.array([11.0]), ("uniform", 10.0))[0] == -np.inf


@pytest.mark.slow
def test_grid_agrees_with_nuts_on_the_marginal_model():
    # NUTS draws: ArviZ's MCSE (ESS-based) against the exact grid moments; 8 thetas + mu + 2 sds,
    # z = 3.5 (Bonferroni at 1% over 11 comparisons)
    model = _model()
    grid = fit(model, method="grid")
    nuts = fit(model, seed=2)
    assert check_convergence(nuts)["ok"].all()
    post = nuts["posterior"].dataset
    exact = grid["exact_moments"]
    mcse = az.mcse(post[["theta", "mu"]], method="mean")
    z_theta = np.abs(post["theta"].mean(("chain", "draw")) - exact["theta_mean"]) / mcse["theta"]
    z_mu = abs(float(post["mu"].mean()) - float(exact["mu_mean"])) / float(mcse["mu"])
    assert float(z_theta.max()) < 3.5 and z_mu < 3.5
    for name in ("sigma_unit", "sigma_group"):
        a, b = post[name].to_numpy().ravel(), grid["posterior"][name].to_numpy().ravel()
        se = math.hypot(float(az.mcse(post[[name]], method="quantile", prob=0.5)[name]), np.std(b) * 1.25 / math.sqrt(b.size))
        assert abs(np.median(a) - np.median(b)) < 3.5 * se, name


def test_box_search_settles_where_it_used_to_go_back_and_forth():
    # a 200-creator data set whose sigma_unit posterior piles up near 0, so its lower tail reaches the
    # DROP threshold just at an edge cell: before the trimming slack, the box was trimmed at one
    # resolution and widened at the next until the search gave up with a warning
    from hbm_lib import simulate_creator_summaries

    data, _ = simulate_creator_summaries(200, genre_effects=[0.3] * 5, sigma_creator=0.2, min_users=300,
                                         max_users=2000, seed=60_035)
    model = hierarchical_normal(data["estimate"], data["se"], mu_prior_sd=1.0, sigma_unit_prior=("half_normal", 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = fit(model, method="grid", draws=100, seed=0, keep_log_likelihood=False)
    # the lower edge of the box sits where the density has fallen by at least DROP from its maximum
    mass = idata["grid"]["mass"]
    assert float(mass[0] / mass.max()) < math.exp(-16) and float(mass[-1] / mass.max()) < math.exp(-16)


@pytest.mark.parametrize("seed", range(20))
def test_box_search_settles_on_random_data(seed):
    # random sizes, spreads and true sds from 0 to large: the search never gives up, in either level
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    se = rng.uniform(0.05, 2.0, n)
    theta = rng.normal(0.0, float(rng.choice([0.0, 0.01, 0.3, 3.0])), n)
    groups = rng.choice(list("abcde"), n)
    for g in (None, groups):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fit(hierarchical_normal(rng.normal(theta, se), se, groups=g), method="grid", draws=50, seed=seed,
                keep_log_likelihood=False)


# ---------------------------------------------------------------------------------------------
# exact leave-one-out, against brute force: the evidence p(y) and p(y_-i) by a dense grid over the
# two log standard deviations of the full multivariate normal (covariance diag(se^2 + sigma_unit^2)
# + sigma_group^2 [same group] + mu_prior_sd^2), so log p(y_i | y_-i) = log p(y) - log p(y_-i)


def _dense_log_evidence(y, se, codes, prior_sd=2.0, m0=0.5, s0=3.0, three_level=True, k=400):
    s = np.linspace(-14.0, 4.0, k)
    s_u, s_g = np.meshgrid(s, s if three_level else np.array([-np.inf]), indexing="ij")
    su2, sg2 = np.exp(2 * s_u).ravel(), np.exp(2 * s_g).ravel()
    same = (codes[:, None] == codes[None, :]).astype(float)
    cov = (np.diag(se**2)[None] + su2[:, None, None] * np.eye(len(y))[None] + sg2[:, None, None] * same[None]
           + s0**2)
    sign, logdet = np.linalg.slogdet(cov)
    resid = y - m0
    quad = np.einsum("i,kij,j->k", resid, np.linalg.inv(cov), resid)
    loglik = -0.5 * (len(y) * math.log(2 * math.pi) + logdet + quad)
    logprior = log_sd_prior(np.exp(s_u.ravel()), ("half_normal", prior_sd)) + s_u.ravel()
    if three_level:
        logprior += log_sd_prior(np.exp(s_g.ravel()), ("half_normal", prior_sd)) + s_g.ravel()
    cell = (s[1] - s[0]) ** (2 if three_level else 1)
    return float(np.logaddexp.reduce(loglik + logprior) + math.log(cell))


@pytest.mark.parametrize("three_level", [True, False], ids=["three_levels", "two_levels"])
def test_exact_loo_matches_brute_force(three_level):
    y, se, groups = TINY["y"], TINY["se"], TINY["groups"].copy()
    groups[5] = "d"  # a unit alone in its group: leaving it out leaves a group with no data
    codes = pd.factorize(groups)[0] if three_level else np.zeros(len(y), dtype=int)
    model = hierarchical_normal(y, se, groups=groups if three_level else None, mu_prior_mean=0.5, mu_prior_sd=3.0,
                                sigma_unit_prior=("half_normal", 2.0), sigma_group_prior=("half_normal", 2.0))
    exact = fit(model, method="grid", draws=10, seed=0)["exact_loo"]
    full = _dense_log_evidence(y, se, codes, three_level=three_level)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        brute = full - _dense_log_evidence(y[keep], se[keep], codes[keep], three_level=three_level)
        assert float(exact["elpd_i"][i]) == pytest.approx(brute, abs=2e-3), i
    assert exact.attrs["edge_mass"] < 1e-4
    # lpd_i >= elpd_i (the full-data posterior has seen y_i), and p_loo is positive but below the
    # number of hyperparameters plus group means
    gap = exact["lpd_i"] - exact["elpd_i"]
    assert (gap > 0).all() and float(gap.sum()) < 8


def test_loo_of_a_grid_fit_is_exact_and_agrees_with_psis():
    from hbm_lib import loo

    data = eight_schools()
    model = hierarchical_normal(data["y"], data["sigma"], units=data["school"], unit_dim="school")
    idata = fit(model, method="grid", chains=4, draws=2000, seed=3)
    exact, psis = loo(idata), loo(idata, method="psis")
    assert exact.kind == "loo_kfold" and exact.n_folds == 8 and exact.pareto_k is None
    assert psis.kind == "loo" and psis.pareto_k is not None
    # PSIS from 8000 exact draws agrees with the exact value to its Monte Carlo error (~0.01 per school)
    np.testing.assert_allclose(psis.elpd_i.to_numpy(), exact.elpd_i.to_numpy(), atol=0.05)
    assert exact.elpd == pytest.approx(float(exact.elpd_i.sum()))
    assert exact.se == pytest.approx(math.sqrt(8 * float(exact.elpd_i.var())))


def test_exact_loo_on_the_coarse_grid_matches_the_fine_one(monkeypatch):
    # exact_loo sums over at most LOO_K = 64 cells per axis. Against 256 cells, on data sets where
    # the quadrature needed a finer grid than that (noisy creators, wide sigma_group boxes), the
    # leave-one-out densities move by at most 0.003 and their total by at most 0.005 on the log
    # scale (measured: 0.0018), far below any elpd difference worth reading (dse is 1 or more)
    from hbm_lib import simulate_creator_summaries
    from hbm_lib.models import _normal_grid as grid

    for seed, min_users in [(60_001, 300), (60_004, 30), (60_005, 30)]:
        data, _ = simulate_creator_summaries(200, sigma_creator=0.2, min_users=min_users, max_users=2000, seed=seed)
        spec = spec_of(hierarchical_normal(data["estimate"], data["se"], groups=data["genre"], mu_prior_sd=1.0))
        post = NormalPosterior(spec)
        q = quadrature(post)
        coarse = grid.exact_loo(post, q)
        with monkeypatch.context() as m:
            m.setattr(grid, "LOO_K", 256)
            fine = grid.exact_loo(post, grid.coarse(post, q, 256))
        np.testing.assert_allclose(coarse["elpd_i"], fine["elpd_i"], atol=0.003)
        assert abs(coarse["elpd_i"].sum() - fine["elpd_i"].sum()) < 0.005
        np.testing.assert_allclose(coarse["lpd_i"], fine["lpd_i"], atol=0.003)

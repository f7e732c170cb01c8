"""Tests for hbm_lib.elpd.leave_one_group_out: against brute force, invariances and bad input.

(``loo`` is tested with the grouping comparisons, in test_selection.py.)"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp

from hbm_lib import fit, hierarchical_normal
from hbm_lib.elpd import leave_one_group_out

RNG = np.random.default_rng(20261202)
GROUPS = np.repeat(["a", "b", "c", "d"], [3, 4, 2, 3])
SE = RNG.uniform(0.5, 1.5, len(GROUPS))
Y = RNG.normal(np.repeat([0.0, 1.5, -1.0, 0.5], [3, 4, 2, 3]), np.hypot(SE, 0.4))
PRIORS = dict(mu_prior_sd=3.0, sigma_unit_prior=("half_normal", 1.0), sigma_group_prior=("half_normal", 2.0))


def brute_force(held: str, pool_by_group: bool, n_draws: int = 40_000) -> tuple[float, float]:
    """log p(y_g | y_-g) by Monte Carlo: exact posterior draws of (mu, sds) given the other groups,
    then the held-out group's joint normal density given them, averaged; and its Monte Carlo se."""
    train, test = GROUPS != held, GROUPS == held
    model = hierarchical_normal(Y[train], SE[train], groups=GROUPS[train] if pool_by_group else None, **PRIORS)
    post = fit(model, method="grid", chains=1, draws=n_draws, seed=3, keep_log_likelihood=False)["posterior"]
    mu, s_u = (post[v].to_numpy().ravel() for v in ("mu", "sigma_unit"))
    s_g = post["sigma_group"].to_numpy().ravel() if pool_by_group else np.zeros_like(mu)
    n = test.sum()
    cov = s_g[:, None, None] ** 2 * np.ones((n, n)) + np.eye(n) * (s_u[:, None, None] ** 2 + SE[test] ** 2)
    lpd = np.array([stats.multivariate_normal.logpdf(Y[test], np.full(n, m), c) for m, c in zip(mu, cov)])
    w = np.exp(lpd - lpd.max())
    return float(logsumexp(lpd) - np.log(len(lpd))), float(w.std() / w.mean() / np.sqrt(len(w)))


@pytest.mark.parametrize("pool_by_group", [True, False])
def test_matches_brute_force_monte_carlo(pool_by_group):
    exact = leave_one_group_out(Y, SE, GROUPS, pool_by_group=pool_by_group, model_options=PRIORS)
    assert list(exact.index) == ["a", "b", "c", "d"] and exact["units"].tolist() == [3, 4, 2, 3]
    for held in ("b", "c"):
        mc, mc_se = brute_force(held, pool_by_group)
        # the Monte Carlo estimate's relative se is a few 1e-3; allow 4 se plus the quadrature's 1e-3
        assert exact.loc[held, "elpd"] == pytest.approx(mc, abs=4 * mc_se + 1e-3)


def test_invariant_to_unit_order_and_aligned_by_label():
    base = leave_one_group_out(Y, SE, GROUPS, model_options=PRIORS)
    order = RNG.permutation(len(Y))
    shuffled = leave_one_group_out(Y[order], SE[order], GROUPS[order], model_options=PRIORS)
    pd.testing.assert_series_equal(shuffled["elpd"].loc[base.index], base["elpd"], rtol=1e-9)
    labels = [f"u{i}" for i in range(len(Y))]
    y, se, g = pd.Series(Y, index=labels), pd.Series(SE, index=labels), pd.Series(GROUPS, index=labels)
    aligned = leave_one_group_out(y, se.iloc[::-1], g.sample(frac=1.0, random_state=1), model_options=PRIORS)
    pd.testing.assert_series_equal(aligned["elpd"], base["elpd"], rtol=1e-9)


def test_the_grouping_predicts_groups_that_really_differ_better():
    by_group = leave_one_group_out(Y, SE, GROUPS, model_options=PRIORS)["elpd"].sum()
    single = leave_one_group_out(Y, SE, GROUPS, pool_by_group=False, model_options=PRIORS)["elpd"].sum()
    assert by_group > single


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(groups=np.repeat(["a", "b"], 6)), "at least 3 distinct labels"),
        (dict(se=SE[:-1]), "lengths differ: y has 12, se has 11"),
        (dict(model_options={"parameterization": "centered"}), "model_options: 'parameterization'"),
        (dict(pool_by_group="yes"), "pool_by_group"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = dict(y=Y, se=SE, groups=GROUPS) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        leave_one_group_out(args.pop("y"), args.pop("se"), args.pop("groups"), **args)

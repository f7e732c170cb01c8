"""Benchmark: simulation-based calibration of every model family in hbm_lib, at full size.

Usage:  .venv/bin/python benchmarks/calibration.py [--quick]

Runs :func:`hbm_lib.simulation_based_calibration` on each of the library's model families and
fitting routes, with the simulators of the appendix chapter "Checking the fitters" (the same
priors, the same data layouts), and more replications than the chapter can afford:

* the hierarchical normal model, two levels (Eight Schools' standard errors) and three (the same
  eight units in three groups), on the exact grid route (``fit(method="grid")``);
* the same two-level model with NUTS, marginal and non-centered, and the three-level model with
  NUTS, marginal (PyMC's own NUTS: faster than nutpie for repeated small fits, see below);
* the beta-binomial model with ``a`` and ``b`` fixed (its rates' prior is Beta(2, 6)), on the grid
  route (exact conjugate draws);
* the beta-binomial model with its improper hyperprior, on the grid route, importance-resampled
  to a proper simulation prior (phi ~ Beta(2, 2), log_kappa ~ N(2.5, 0.75));
* the varying-intercept, varying-slope logistic model (four groups, two arms of 100 users), with
  NUTS (non-centered, target_accept 0.95).

One row per case and parameter: replications, ranked draws, the chi-square p-value and whether
the ECDF stays inside its simultaneous 95% band, the coverage of the central 90% interval
(``(r + 0.5) / (L + 1)`` within 0.05 of either end counts as outside; nominal 0.9 when ``L + 1`` is
a multiple of 10) with its binomial standard error, the mean seconds per fit and the number of
fits with divergences, whether the case passes the chapter's criterion (no p-value below 0.05 / K
for its K parameters, and no more ECDFs outside their band than chance gives with probability
0.99), and the ranks themselves (space-separated, in replication order;
``CalibrationResult.from_ranks`` tests them again). A case that does not pass is run once more
with a fresh seed (``run`` 2): a bug fails again, a chance failure does not. (The rule was added
after a first full run flagged two cases, the marginal NUTS fit and the reweighted beta-binomial
grid, with p-values of 0.001 and 0.005; both are runs 1 here.) A last case times nutpie on a few replications of the marginal model,
for the sampler comparison. The table is printed and saved to
``benchmarks/results/calibration.csv`` (with the date and the machine); the chapter reads it.
``--quick`` runs a few replications of each case without saving. The full run takes about half an
hour on the 2-core machine (shared), most of it in the NUTS cases.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time

import numpy as np
import pandas as pd
from _report import report
from scipy import stats

import hbm_lib
from hbm_lib.calibration import simulation_based_calibration

SEED = 20_261_203
SE = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])  # Eight Schools' standard errors
GROUPS = np.array(["a", "a", "a", "b", "b", "b", "c", "c"])
TRIALS = np.array([5, 10, 20, 40, 80, 160])
N_GROUPS = 4
ROW_GROUP = np.repeat(np.arange(N_GROUPS), 2)
TREATED = np.tile([0, 1], N_GROUPS)


def two_level(rng):
    mu, sigma = rng.normal(0.0, 10.0), abs(rng.normal(0.0, 5.0))
    theta = rng.normal(mu, sigma, size=len(SE))
    return {"y": rng.normal(theta, SE), "se": SE}, {"mu": mu, "sigma_unit": sigma, "theta": theta}


def three_level(rng):
    mu, sigma_unit, sigma_group = rng.normal(0.0, 10.0), abs(rng.normal(0.0, 5.0)), abs(rng.normal(0.0, 5.0))
    mu_group = rng.normal(mu, sigma_group, size=3)
    theta = rng.normal(mu_group[[0, 0, 0, 1, 1, 1, 2, 2]], sigma_unit)
    truth = {"mu": mu, "sigma_unit": sigma_unit, "sigma_group": sigma_group, "mu_group": mu_group, "theta": theta}
    return {"y": rng.normal(theta, SE), "se": SE, "groups": GROUPS}, truth


def fixed_beta(rng):
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
    """The grid posterior under the improper hyperprior, importance-resampled to the proper one."""
    posterior = hbm_lib.fit(model, method="grid", chains=1, draws=n_draws, seed=seed, keep_log_likelihood=False)["posterior"]
    phi, log_kappa = (posterior[k].to_numpy().ravel() for k in ("phi", "log_kappa"))
    log_w = stats.beta.logpdf(phi, 2.0, 2.0) + stats.norm.logpdf(log_kappa, 2.5, 0.75) + 0.5 * log_kappa
    w = np.exp(log_w - log_w.max())
    pick = np.random.default_rng(seed).choice(n_draws, size=n_draws, p=w / w.sum())
    return posterior.to_dataset().isel(draw=pick).assign_coords(draw=np.arange(n_draws)).drop_attrs()


def logistic(rng):
    """The priors of ``varying_slopes_logistic``'s defaults: StudentT(3, 0, 1) means, HN(1) sds."""
    mu_alpha, mu_beta = rng.standard_t(3), rng.standard_t(3)
    sigma_alpha, sigma_beta = abs(rng.normal(0.0, 1.0)), abs(rng.normal(0.0, 1.0))
    alpha, beta = rng.normal(mu_alpha, sigma_alpha, N_GROUPS), rng.normal(mu_beta, sigma_beta, N_GROUPS)
    p = 1.0 / (1.0 + np.exp(-(alpha[ROW_GROUP] + beta[ROW_GROUP] * TREATED)))
    trials = np.full(2 * N_GROUPS, 100)
    data = {"successes": rng.binomial(trials, p), "trials": trials, "groups": ROW_GROUP, "treated": TREATED}
    truth = {"mu_alpha": mu_alpha, "sigma_alpha": sigma_alpha, "mu_beta": mu_beta, "sigma_beta": sigma_beta,
             "alpha": alpha, "beta": beta}
    return data, truth


GRID = {"method": "grid", "draws": 100, "chains": 1}
# 2 x 500 draws thinned to 19: the marginal form's sigma_unit has an effective sample size of
# about 150-200 in 1,000 draws, so the 19 kept are nearly independent
NUTS = {"draws": 500, "tune": 500, "chains": 2, "cores": 1, "nuts_sampler": "pymc"}
# name: (family, route, builder, simulator, n_sims, ranked_draws, fit_options, fitter)
CASES = {
    "normal 2-level, grid": ("hierarchical_normal", "grid (exact)", hbm_lib.hierarchical_normal, two_level, 1000, 99, GRID, None),
    "normal 3-level, grid": ("hierarchical_normal", "grid (exact)", hbm_lib.hierarchical_normal, three_level, 500, 99, GRID, None),
    "beta-binomial a, b fixed, grid": (
        "beta_binomial", "grid (conjugate)", functools.partial(hbm_lib.beta_binomial, a=2.0, b=6.0), fixed_beta,
        1000, 99, GRID, None),
    "beta-binomial hyperprior, grid reweighted": (
        "beta_binomial", "grid, resampled to a proper prior", hbm_lib.beta_binomial, proper_hyperprior, 500, 99,
        None, reweighted_grid),
    "normal 2-level, NUTS marginal": (
        "hierarchical_normal", "NUTS (PyMC), marginal", hbm_lib.hierarchical_normal, two_level, 100, 19, NUTS, None),
    "normal 2-level, NUTS non-centered": (
        "hierarchical_normal", "NUTS (PyMC), non-centered",
        functools.partial(hbm_lib.hierarchical_normal, parameterization="non_centered"), two_level, 100, 19, NUTS, None),
    "normal 3-level, NUTS marginal": (
        "hierarchical_normal", "NUTS (PyMC), marginal", hbm_lib.hierarchical_normal, three_level, 40, 19, NUTS, None),
    "logistic, NUTS non-centered": (
        "varying_slopes_logistic", "NUTS (PyMC), non-centered", hbm_lib.varying_slopes_logistic, logistic, 60, 19,
        NUTS, None),
    "normal 2-level, NUTS marginal, nutpie": (
        "hierarchical_normal", "NUTS (nutpie), marginal", hbm_lib.hierarchical_normal, two_level, 8, 19,
        {**NUTS, "nuts_sampler": "nutpie"}, None),
}


def coverage_90(ranks: pd.Series, ranked_draws: int) -> float:
    u = (ranks.to_numpy() + 0.5) / (ranked_draws + 1)
    return float(np.mean(np.abs(u - 0.5) < 0.45))


def passes(result) -> bool:
    """The chapter's criterion: every p-value above 0.05 / K (Bonferroni over the case's K
    parameters), and no more ECDFs outside their band than K independent 5% failures give with
    probability 0.99."""
    s = result.summary
    k = len(s)
    return bool((s["p_value"] > 0.05 / k).all() and (~s["in_band"]).sum() <= stats.binom.ppf(0.99, k, 0.05))


def run_case(name: str, quick: bool, run: int = 1) -> tuple[pd.DataFrame, object]:
    family, route, builder, simulator, n_sims, ranked_draws, options, fitter = CASES[name]
    n_sims = min(n_sims, 6) if quick else n_sims
    seed = SEED + run - 1
    start = time.perf_counter()
    result = simulation_based_calibration(
        builder, simulator, n_sims=n_sims, ranked_draws=ranked_draws, fit_options=options, fitter=fitter,
        seed=seed, progress=lambda done, total: print(f"\r{name} (run {run}): {done}/{total}", end="", file=sys.stderr),
    )
    print(f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    table = result.summary[["n_sims", "p_value", "in_band"]].copy()
    table.insert(0, "ranked_draws", ranked_draws)
    table["coverage_90"] = [coverage_90(result.ranks[p], ranked_draws) for p in table.index]
    table["coverage_90_se"] = np.sqrt(0.9 * 0.1 / n_sims)
    table["seconds_per_fit"] = result.fits["seconds"].mean()
    table["divergent_fits"] = int((result.fits["divergences"] > 0).sum())
    table["case_passes"] = passes(result)
    # the ranks themselves, so that the chapter can draw their ECDFs (CalibrationResult.from_ranks)
    table["ranks"] = [" ".join(map(str, result.ranks[p])) for p in table.index]
    table = table.reset_index()
    for k, (column, value) in enumerate({"case": name, "run": run, "seed": seed, "family": family, "route": route}.items()):
        table.insert(k, column, value)
    return table, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few replications per case, not saved")
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.CRITICAL)
    tables = []
    for name in CASES:
        table, result = run_case(name, args.quick)
        tables.append(table)
        if not passes(result) and not args.quick:
            # a case that fails is run once more, with a fresh seed: a bug fails again, a chance
            # failure (p-values below 0.05 / K happen, about 5% of the time per case) does not
            tables.append(run_case(name, args.quick, run=2)[0])
    table = pd.concat(tables, ignore_index=True)
    with pd.option_context("display.max_colwidth", 24):  # the ranks column, abbreviated
        report(table, "calibration", save=not args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())

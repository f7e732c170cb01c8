"""Benchmark: PyMC's own NUTS against nutpie on the book's real fits, cold and warm.

Usage:  .venv/bin/python benchmarks/samplers.py [--quick]

PyMC 6 runs NUTS either itself (``nuts_sampler="pymc"``: one process per chain, forked, each
stepping a log density that PyTensor 3 compiles with numba) or through nutpie
(``nuts_sampler="nutpie"``: the same numba-compiled log density, chains on Rust threads in this
process). This script fits each of the book's NUTS models with both, 4 chains x 1000 draws after
1000 tuning steps on 2 cores, with the settings the chapters use:

* Eight Schools, non-centered and marginal (``hbm_lib.hierarchical_normal``, mu ~ N(0, 5),
  tau ~ half-Cauchy(5); target_accept 0.9);
* 500 simulated creators in 5 genres, the three-level marginal model of "Creator experiments"
  (target_accept 0.95);
* the varying-intercept, varying-slope logistic model of "Beta-binomial A/B tests", from 400 user
  rows (target_accept 0.99);
* the same model written in Bambi (``success ~ treated + (treated | country)``), fitted by Bambi.

Each fit runs in a fresh process, twice: *cold*, with empty PyTensor and numba caches (a reader's
first run), then *warm*, with the caches the cold run left (every later run). For each it reports
the wall time of the fit call, the sampling time PyMC measures (``sampling_time``), the rest
(``overhead_s``: compiling, starting processes or threads, post-processing), divergences, the
largest R-hat and the smallest bulk ESS over the model's parameters, and ESS per second of wall time
(``ess_per_s``) and of sampling time. The table is printed and saved to
``benchmarks/results/samplers.csv``; the README quotes it and ``hbm_lib.inference.DEFAULT_NUTS_SAMPLER``
follows from it. ``--quick`` runs each fit warm only, without saving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import report

CASES = [
    "eight_schools_non_centered",
    "eight_schools_marginal",
    "creators_500_marginal",
    "varying_slopes_logistic",
    "varying_slopes_bambi",
]
SAMPLERS = ["pymc", "nutpie"]
SEED = 20_240_601
DRAWS = dict(draws=1000, tune=1000, chains=4, cores=2)


def _ab_users():
    """The A/B chapter's two markets: 100 users per arm, 30/50 and 55/60 conversions."""
    import numpy as np
    import pandas as pd

    cells = [("Canada", 0, 30), ("Canada", 1, 50), ("China", 0, 55), ("China", 1, 60)]
    rows = [(c, t, int(k < s)) for c, t, s in cells for k in range(100)]
    return pd.DataFrame(rows, columns=["country", "treated", "success"]).astype({"success": np.int64})


def fit_case(case: str, sampler: str):
    """Fit one case with one sampler; return (idata, parameters to check, wall seconds)."""
    import hbm_lib

    if case.startswith("eight_schools"):
        d = hbm_lib.eight_schools()
        parameterization = case.removeprefix("eight_schools_")
        model = hbm_lib.hierarchical_normal(
            d["y"], d["sigma"], units=d["school"], parameterization=parameterization,
            mu_prior_sd=5.0, sigma_unit_prior=("half_cauchy", 5.0),
        )
        settings, params = dict(target_accept=0.9), ["mu", "sigma_unit", "theta"]
    elif case == "creators_500_marginal":
        data, _ = hbm_lib.simulate_creator_summaries(500, seed=1)
        model = hbm_lib.hierarchical_normal(
            data["estimate"], data["se"], groups=data["genre"], mu_prior_sd=1.0,
            sigma_unit_prior=("half_normal", 1.0), sigma_group_prior=("half_normal", 1.0),
        )
        settings, params = dict(target_accept=0.95), ["mu", "sigma_group", "sigma_unit", "mu_group"]
    elif case == "varying_slopes_logistic":
        users = _ab_users()
        model = hbm_lib.varying_slopes_logistic_from_rows(
            users["success"], users["country"], users["treated"], group_dim="country"
        )
        settings = dict(target_accept=0.99)
        params = ["mu_alpha", "sigma_alpha", "mu_beta", "sigma_beta", "alpha", "beta"]
    elif case == "varying_slopes_bambi":
        return _fit_bambi(sampler)
    else:
        raise ValueError(f"unknown case {case!r}")
    start = time.perf_counter()
    idata = hbm_lib.fit(model, **DRAWS, **settings, seed=SEED, nuts_sampler=sampler)
    return idata, params, time.perf_counter() - start


def _fit_bambi(sampler: str):
    import bambi as bmb

    student_t = bmb.Prior("StudentT", nu=3, mu=0, sigma=1)
    sd_prior = bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1))
    model = bmb.Model(
        "success ~ treated + (treated | country)", _ab_users(), family="bernoulli",
        priors={"Intercept": student_t, "treated": student_t, "1|country": sd_prior, "treated|country": sd_prior},
    )
    start = time.perf_counter()
    idata = model.fit(**DRAWS, target_accept=0.99, random_seed=SEED, progressbar=False, inference_method=sampler)
    params = ["Intercept", "treated", "1|country_sigma", "treated|country_sigma", "1|country", "treated|country"]
    return idata, params, time.perf_counter() - start


def run_one(case: str, sampler: str) -> dict:
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)
    import arviz as az
    import numpy as np

    idata, params, wall = fit_case(case, sampler)
    post = idata["posterior"].to_dataset()[params]
    ess = float(min(np.min(v.to_numpy()) for v in az.ess(post, method="bulk").data_vars.values()))
    rhat = float(max(np.max(v.to_numpy()) for v in az.rhat(post).data_vars.values()))
    sampling = float(idata["posterior"].attrs["sampling_time"])
    return {
        "wall_s": wall,
        "sampling_s": sampling,
        "overhead_s": wall - sampling,
        "divergences": int(idata["sample_stats"]["diverging"].sum()),
        "max_rhat": rhat,
        "min_ess_bulk": ess,
        "ess_per_s": ess / wall,
        "ess_per_sampling_s": ess / sampling,
    }


def _in_fresh_process(case: str, sampler: str, cache: str) -> dict:
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={cache}/pytensor", "NUMBA_CACHE_DIR": f"{cache}/numba"}
    out = subprocess.run(
        [sys.executable, __file__, "--one", case, sampler], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"{case} with {sampler} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(quick: bool = False) -> int:
    import pandas as pd

    rows = []
    for case in CASES:
        for sampler in SAMPLERS:
            with tempfile.TemporaryDirectory(prefix="hbm-bench-") as cache:
                for cache_state in ["warm"] if quick else ["cold", "warm"]:
                    if quick:  # warm the cache first, unmeasured
                        _in_fresh_process(case, sampler, cache)
                    result = _in_fresh_process(case, sampler, cache)
                    rows.append({"case": case, "sampler": sampler, "cache": cache_state, **result})
                    print(f"done: {case} {sampler} {cache_state}", file=sys.stderr, flush=True)
    report(pd.DataFrame(rows), "samplers", save=not quick)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2], sys.argv[3])))
    else:
        sys.exit(main(quick="--quick" in sys.argv))

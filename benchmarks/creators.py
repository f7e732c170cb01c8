"""Benchmark: the three-level creator model at 500 to 500,000 creators.

Usage:  .venv/bin/python benchmarks/creators.py [--quick]

Fits hbm_lib's three-level hierarchical normal model (5 genres) to simulated creator summaries with
the marginal parameterization at 500, 5,000, 50,000 and 500,000 creators, and the all-non-centered
form at 500 and 5,000 for contrast (4 chains x 1000 draws after 1000 tuning steps, 2 cores, the
library's default sampler, nutpie). For each it reports the wall time of ``hbm_lib.fit``, the
sampling time (PyMC's own measure), the rest (``overhead_s``: compiling the log density and
gradient, starting the sampler, the exact draws of the integrated-out parameters, the
log-likelihood), divergences, the largest R-hat and smallest bulk ESS over the hyperparameters (mu,
sigma_group, sigma_unit and the genre means), and the peak memory of the process. Each configuration runs in its own process so that its memory is its own. The table is
printed and saved, with the date and machine, to benchmarks/results/creators.csv, which the
creator-experiments chapter reads.

Targets (issue "Creator experiments"): 500 creators in under 5 s of sampling with no divergences,
R-hat <= 1.01 and bulk ESS >= 1000 for every hyperparameter; 50,000 in under 60 s; 500,000 must run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _report import report

HERE = Path(__file__).resolve().parent
CONFIGS = [
    ("marginal", 500),
    ("marginal", 5_000),
    ("marginal", 50_000),
    ("marginal", 500_000),
    ("non_centered", 500),
    ("non_centered", 5_000),
]
HYPER = ["mu", "sigma_group", "sigma_unit", "mu_group"]


def run_one(parameterization: str, n_creators: int) -> dict:
    import logging
    import warnings

    logging.getLogger("pymc").setLevel(logging.ERROR)
    from hbm_lib.models import check_convergence, fit, hierarchical_normal
    from hbm_lib.simulate import simulate_creator_summaries

    data, _ = simulate_creator_summaries(n_creators, seed=1)
    model = hierarchical_normal(
        data["effect"], data["se"], groups=data["genre"], parameterization=parameterization,
        mu_prior_sd=1.0, sigma_unit_prior=("half_normal", 1.0), sigma_group_prior=("half_normal", 1.0),
    )
    big = n_creators > 50_000
    start = time.perf_counter()
    idata = fit(model, random_seed=1, keep_theta=not big, keep_log_likelihood=not big)
    wall_s = time.perf_counter() - start
    sampling_s = float(idata["posterior"].attrs["sampling_time"])
    check = check_convergence(idata, var_names=HYPER, warn=False)
    return {
        "parameterization": parameterization,
        "creators": n_creators,
        "wall_s": wall_s,
        "sampling_s": sampling_s,
        "overhead_s": wall_s - sampling_s,
        "divergences": int(idata["sample_stats"]["diverging"].sum()),
        "max_rhat": float(check["r_hat"].max()),
        "min_ess_bulk": float(check["ess_bulk"].min()),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }



def main(quick: bool = False) -> int:
    import pandas as pd

    configs = [c for c in CONFIGS if not quick or c[1] <= 5_000]
    rows = []
    for parameterization, n in configs:
        out = subprocess.run([sys.executable, __file__, "--one", parameterization, str(n)], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"done: {parameterization} {n:,} creators", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    report(table, "creators", save=not quick)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2], int(sys.argv[3]))))
    else:
        sys.exit(main(quick="--quick" in sys.argv))

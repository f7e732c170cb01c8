"""Benchmark: the three-level creator model from 500 to 5,000,000 creators, exact grid against NUTS.

Usage:  .venv/bin/python benchmarks/creators.py [--quick]

Fits hbm_lib's three-level hierarchical normal model (5 genres; mu ~ N(0, 1), half-normal(1) priors
on both standard deviations) to simulated creator summaries (``simulate_creator_summaries``, seed 1)
three ways, each in its own process so that its peak memory is its own:

* ``grid``: ``fit(model, method="grid")``, the exact posterior by quadrature over the two standard
  deviations (4 x 1000 independent draws of the hyperparameters; no theta draws, whose exact means
  and sds the fit returns anyway), at 500, 5,000, 50,000, 500,000 and 5,000,000 creators;
* ``NUTS, marginal``: ``fit(model)`` on the marginal parameterization (nutpie, 4 chains x 1000
  draws after 1000 tuning steps, 2 cores), at 500 to 500,000 creators;
* ``NUTS, non-centered``: the same on the non-centered form, at 500 and 5,000 only (at 5,000 it
  already takes about two minutes of sampling, and it grows faster than linearly).

For each: wall time of ``fit``, peak resident memory, divergences and the smallest bulk ESS over
mu, sigma_group and sigma_unit (NUTS), and the largest distance of its posterior means of mu,
sigma_group and sigma_unit from the grid's on the same data, in the grid's posterior sds
(``max_gap_sd``; for NUTS draws about 0.02-0.05 is Monte Carlo error). The table is printed and saved
to ``benchmarks/results/creators.csv``, which the creator-experiments chapter reads. ``--quick``
runs up to 5,000 creators, without saving.

Targets (issue "The exact posterior without MCMC"): 500,000 creators in <= 10 s and <= 2 GB with the
grid, 50,000 in <= 1 s, and a 5,000,000 row.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from _report import report

PLAN = [
    *[("grid", n) for n in (500, 5_000, 50_000, 500_000, 5_000_000)],
    *[("NUTS, marginal", n) for n in (500, 5_000, 50_000, 500_000)],
    *[("NUTS, non-centered", n) for n in (500, 5_000)],
]
HYPER = ["mu", "sigma_group", "sigma_unit"]


def _fit(method: str, n_creators: int):
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)
    from hbm_lib import fit, hierarchical_normal, simulate_creator_summaries

    data, _ = simulate_creator_summaries(n_creators, seed=1)
    priors = dict(mu_prior_sd=1.0, sigma_unit_prior=("half_normal", 1.0), sigma_group_prior=("half_normal", 1.0))

    def model(parameterization="marginal"):
        return hierarchical_normal(data["estimate"], data["se"], groups=data["genre"], parameterization=parameterization, **priors)

    lean = dict(keep_theta=False, keep_log_likelihood=False)
    start = time.perf_counter()
    if method == "grid":
        idata = fit(model(), method="grid", seed=1, **lean)
    elif method == "NUTS, marginal":
        idata = fit(model(), seed=1, **lean)
    else:
        idata = fit(model("non_centered"), seed=1, **lean)
    wall = time.perf_counter() - start
    reference = idata if method == "grid" else fit(model(), method="grid", seed=1, **lean)
    return idata, reference, wall


def run_one(method: str, n_creators: int) -> dict:
    from hbm_lib import check_convergence

    idata, reference, wall = _fit(method, n_creators)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    post, ref = idata["posterior"], reference["posterior"]
    gaps = [abs(float(post[v].mean()) - float(ref[v].mean())) / float(ref[v].std()) for v in HYPER]
    row = {"method": method, "creators": n_creators, "wall_s": wall, "peak_memory_gb": peak_gb, "max_gap_sd": max(gaps),
           "sigma_unit_mean": float(post["sigma_unit"].mean()), "sigma_group_mean": float(post["sigma_group"].mean())}
    if method == "grid":
        row.update(divergences=0, min_ess_bulk=float("nan"), grid_nodes=str(post.attrs["grid_nodes"]))
    else:
        check = check_convergence(idata, var_names=HYPER, warn=False)
        row.update(divergences=int(idata["sample_stats"]["diverging"].sum()), min_ess_bulk=float(check["ess_bulk"].min()), grid_nodes="")
    return row


def main(quick: bool = False) -> int:
    import pandas as pd

    rows = []
    for method, n in PLAN:
        if quick and n > 5_000:
            continue
        out = subprocess.run([sys.executable, __file__, "--one", method, str(n)], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{method} at {n} creators failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"done: {method} at {n:,} creators in {rows[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    report(pd.DataFrame(rows), "creators", save=not quick)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2], int(sys.argv[3]))))
    else:
        sys.exit(main(quick="--quick" in sys.argv))

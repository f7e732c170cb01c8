"""Benchmark: the grouping chapter's double-dipping experiment, with hundreds of data sets per world.

Usage:  .venv/bin/python benchmarks/double_dipping.py [--data-sets N]

The chapter "Choosing the grouping" runs a designed experiment on 50 simulated data sets per world
(two worlds: no attribute matters, genre matters) and three routes that choose what to pool by
(pre-specified candidates with the LOO rule, all eight candidates with the LOO rule, and the
grouping with the largest between-group chi-squared, no check). This script runs the same design
with ``N`` data sets per world (default 300), the same simulator settings, priors and seeds
(data set ``k`` uses seed ``80_000 + k``, so the chapter's 50 are the first 50 here), and saves one
row per world, data set and route to ``benchmarks/results/double_dipping.csv``: the grouping chosen,
the coverage of the creators' 95% intervals and their MSE against the truth, and each data set's
largest LOO lead over the single population (in standard errors of the difference) among the
pre-specified candidates and among all eight. The chapter reads the file and summarises it beside
its own run. Each data set costs about 0.4 s (nine exact fits with exact leave-one-out); the
default run takes about 5 minutes on the 2-core machine.

The design is repeated here rather than imported, because the chapter shows its code to readers
who download it as a notebook; ``tests``-style agreement is checked instead: the chapter asserts
that its 50 data sets give the same rows as the first 50 of this file.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
from _report import report

import hbm_lib
from hbm_lib import choose_grouping, fit, hierarchical_normal, posterior_summary, simulate_creator_summaries

PRIORS = dict(mu_prior_sd=1.0, sigma_unit_prior=("half_normal", 1.0), sigma_group_prior=("half_normal", 1.0))
DESIGN = dict(n_creators=100, sigma_creator=0.2, min_users=300, max_users=2000)
WORLDS = {"no attribute matters": [0.3] * 5, "genre matters": [0.1, 0.2, 0.3, 0.4, 0.5]}
ROUTES = ["pre-specified, LOO", "all eight, LOO", "all eight, largest chi-squared"]
PRE_SPECIFIED = ["genre", "size quartile"]
BASE = "single population"
FIRST_SEED = 80_000


def routes_on_one_data_set(genre_effects, seed) -> list[dict]:
    data, truth = simulate_creator_summaries(seed=seed, genre_effects=genre_effects, **DESIGN)
    y, se, effect = data["estimate"], data["se"], truth.creators.set_index("creator")["effect"]
    attribute_rng = np.random.default_rng([seed, 1])
    candidates = {"genre": data["genre"], "size quartile": pd.qcut(data["n"], 4, labels=False)}
    candidates |= {f"attribute {j}": pd.Series(pd.qcut(attribute_rng.normal(size=len(data)), 4, labels=False),
                                               index=data.index) for j in range(1, 7)}
    by_loo = choose_grouping(y, se, candidates, model_options=PRIORS, fit_options={"method": "grid"})
    z = by_loo.statistic
    pre = z[PRE_SPECIFIED]
    chosen = {ROUTES[0]: pre.idxmax() if pre.max() > 2 else BASE, ROUTES[1]: by_loo.chosen,
              ROUTES[2]: choose_grouping(y, se, candidates, rule="largest_chi2").chosen}
    rows, fits = [], {}
    for route, name in chosen.items():
        if name not in fits:
            model = hierarchical_normal(y, se, groups=None if name == BASE else candidates[name], **PRIORS)
            fits[name] = fit(model, method="grid", draws=250, seed=seed, keep_log_likelihood=False)
        scored = hbm_lib.score(posterior_summary(fits[name], "theta"), effect)
        rows.append({"route": route, "chosen": name, "data_set": seed, "coverage": float(scored["coverage"].iloc[0]),
                     "mse": float(scored["mse"].iloc[0]), "best_z_pre": float(pre.max()),
                     "best_z_all": float(z.drop(BASE).max())})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-sets", type=int, default=300, help="data sets per world (default 300)")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    for world, effects in WORLDS.items():
        for k in range(args.data_sets):
            rows += [{"world": world, **r} for r in routes_on_one_data_set(effects, FIRST_SEED + k)]
            print(f"\r{world}: {k + 1}/{args.data_sets}", end="", file=sys.stderr)
        print(file=sys.stderr)
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    table = pd.DataFrame(rows)
    summary = table.groupby(["world", "route"], sort=False).agg(
        data_sets=("coverage", "size"), coverage=("coverage", "mean"), mse=("mse", "mean"),
        chose_genre=("chosen", lambda c: float((c == "genre").mean())))
    print(summary.round(3).to_string())
    report(table, "double_dipping", save=args.data_sets >= 100)
    return 0


if __name__ == "__main__":
    sys.exit(main())

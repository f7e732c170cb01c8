"""Benchmark: the imputation estimator (clustered BJS variance) against diff-diff, and at scale.

Usage:  .venv/bin/python benchmarks/staggered.py [--quick]

Builds balanced panels of N units over 50 periods (four adoption cohorts at periods 10, 20, 30
and 40 plus a never-treated fifth, effects growing with time since adoption, unit-specific AR(1)
noise with autocorrelation 0.5; numpy, seed 1) and, each in a fresh process so that peak memory is
its own, times:

* hbm_lib's ``imputation_estimator`` with its defaults (BJS's clustered variance for the ATT and
  every horizon, 5 placebo horizons, AR(1)-aware standard errors for every unit), and with
  ``pre_periods=0`` (no placebos);
* diff-diff's ``ImputationDiD`` (the same estimator and clustered variance: ATT and event study),
  the cross-check the book's tests compare against;
* ``two_way_fixed_effects`` (static, and the event study).

At 10,000 x 50 every case runs; at 100,000 x 50 (5 million rows) hbm_lib's estimator alone.
Reported: wall time of the first call and the best of 3 (1 at 100,000), peak resident memory of
the process, and the ATT and its standard error (hbm_lib and diff-diff must agree). The table is
printed and saved to ``benchmarks/results/staggered.csv``; ``--quick`` runs 10,000 x 50 only,
without saving.

Targets (issue: hbm_lib 1.0): the clustered estimator no slower than diff-diff at 10,000 x 50, and
a 100,000 x 50 row.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

from _report import report

N_PERIODS, SEED, RHO = 50, 1, 0.5


def build_panel(n_units: int, n_periods: int = N_PERIODS, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    first_treated = rng.choice([10.0, 20.0, 30.0, 40.0, np.nan], n_units)
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(n_periods), n_units)
    ft = first_treated[unit]
    horizon = period - ft
    treated = ~np.isnan(ft) & (horizon >= 0)
    effect = np.where(treated, rng.normal(1.0, 0.5, n_units)[unit] + 0.05 * np.where(treated, horizon, 0), 0.0)
    z = rng.normal(size=(n_units, n_periods))
    for t in range(1, n_periods):
        z[:, t] = RHO * z[:, t - 1] + np.sqrt(1 - RHO**2) * z[:, t]
    noise = (rng.uniform(0.5, 1.5, n_units)[:, None] * z).ravel()
    outcome = rng.normal(0, 2, n_units)[unit] + np.cumsum(rng.normal(0.1, 0.3, n_periods))[period] + effect + noise
    return pd.DataFrame({"unit": unit, "time": period, "outcome": outcome, "first_treated": ft})


def _case(name: str, panel: pd.DataFrame):
    """The call to time, and how to read (att, se) off its result."""
    from hbm_lib.staggered import imputation_estimator, two_way_fixed_effects

    if name == "hbm_lib imputation_estimator":
        return lambda: imputation_estimator(panel), lambda r: (r.att, r.att_se)
    if name == "hbm_lib imputation_estimator, no placebos":
        return lambda: imputation_estimator(panel, pre_periods=0), lambda r: (r.att, r.att_se)
    if name == "diff-diff ImputationDiD (ATT and event study)":
        from diff_diff import ImputationDiD

        data = panel.assign(ft=panel["first_treated"].fillna(0).astype(int))

        def run():
            result = ImputationDiD().fit(data, outcome="outcome", unit="unit", time="time", first_treat="ft")
            result.aggregate("event_study")
            return result

        return run, lambda r: (r.overall_att, r.overall_se)
    if name == "hbm_lib two_way_fixed_effects static":
        return lambda: two_way_fixed_effects(panel), lambda r: (float(r["estimate"].iloc[0]), float(r["se"].iloc[0]))
    if name == "hbm_lib two_way_fixed_effects event study":
        return lambda: two_way_fixed_effects(panel, event_study=True), lambda r: (np.nan, np.nan)
    raise ValueError(name)


def run_one(name: str, n_units: int, repeats: int) -> dict:
    warnings.simplefilter("ignore")  # diff-diff's informational warnings
    panel = build_panel(n_units)
    call, read = _case(name, panel)
    times = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    att, se = read(result)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    return {"first_call_s": times[0], "best_s": min(times[1:]) if repeats else times[0], "peak_memory_gb": peak_gb, "att": att, "att_se": se}


CASES_10K = [
    "hbm_lib imputation_estimator",
    "hbm_lib imputation_estimator, no placebos",
    "diff-diff ImputationDiD (ATT and event study)",
    "hbm_lib two_way_fixed_effects static",
    "hbm_lib two_way_fixed_effects event study",
]


def main(quick: bool = False) -> int:
    plan = [(name, 10_000, 3) for name in CASES_10K]
    if not quick:
        plan.append(("hbm_lib imputation_estimator", 100_000, 1))
    rows = []
    for name, n_units, repeats in plan:
        out = subprocess.run([sys.executable, __file__, "--one", name, str(n_units), str(repeats)], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{name} at {n_units} units failed:\n{out.stderr[-3000:]}")
        rows.append({"case": name, "units": n_units, "periods": N_PERIODS, "rows": n_units * N_PERIODS, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(f"done: {name} at {n_units} units", file=sys.stderr, flush=True)
    report(pd.DataFrame(rows), "staggered", save=not quick)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        sys.exit(main(quick="--quick" in sys.argv))

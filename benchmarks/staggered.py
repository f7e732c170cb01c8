"""Benchmark: the imputation estimator and two-way fixed effects on 10,000 units x 50 periods.

Usage:  .venv/bin/python benchmarks/staggered.py

Builds a balanced panel of 10,000 creators over 50 periods (500,000 rows; four adoption cohorts at
periods 10, 20, 30 and 40 plus a never-treated fifth, effects growing with time since adoption,
unit-specific noise; numpy, seed 1) and times hbm_lib's imputation_estimator (default settings: 5
placebo horizons, unit-specific variances, exact standard errors for the ATT, every horizon and every
unit) and two_way_fixed_effects (static, and the event study). Each is timed on its first call and as
the best of 3 calls. The table is printed and saved, with the date and machine, to
benchmarks/results/staggered.csv.

Target (chapter "Staggered adoption"): the imputation estimator on 10,000 x 50 in under 2 s.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from _report import report

from hbm_lib.staggered import imputation_estimator, two_way_fixed_effects

N_UNITS, N_PERIODS, SEED = 10_000, 50, 1


def build_panel(n_units: int = N_UNITS, n_periods: int = N_PERIODS, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    first_treated = rng.choice([10.0, 20.0, 30.0, 40.0, np.nan], n_units)
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(n_periods), n_units)
    ft = first_treated[unit]
    horizon = period - ft
    treated = ~np.isnan(ft) & (horizon >= 0)
    effect = np.where(treated, rng.normal(1.0, 0.5, n_units)[unit] + 0.05 * np.where(treated, horizon, 0), 0.0)
    sigma = rng.uniform(0.5, 1.5, n_units)[unit]
    outcome = rng.normal(0, 2, n_units)[unit] + np.cumsum(rng.normal(0.1, 0.3, n_periods))[period] + effect
    outcome += rng.normal(0.0, sigma)
    return pd.DataFrame({"creator": unit, "period": period, "outcome": outcome, "first_treated": ft})


def time_calls(fn, repeats: int = 3) -> tuple[float, float]:
    times = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[0], min(times[1:])



def main() -> int:
    panel = build_panel()
    cases = [
        ("imputation_estimator", lambda: imputation_estimator(panel)),
        ("two_way_fixed_effects static", lambda: two_way_fixed_effects(panel)),
        ("two_way_fixed_effects event study", lambda: two_way_fixed_effects(panel, event_study=True)),
    ]
    rows = []
    for name, fn in cases:
        first, best = time_calls(fn)
        rows.append(
            {
                "function": name,
                "units": N_UNITS,
                "periods": N_PERIODS,
                "rows": len(panel),
                "first_call_s": first,
                "best_of_3_s": best,
            }
        )
    table = pd.DataFrame(rows)
    report(table, "staggered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: Eight Schools in the three parameterizations of hbm_lib.models.

Priors mu ~ N(0, 5) and tau = sigma_unit ~ half-Cauchy(5); 4 chains on 2 cores, the same
number of draws for every fit, the library's default sampler (nutpie). Prints, per
parameterization:

* sampling: wall time of the NUTS run itself (PyMC's ``sampling_time``, tuning included);
* fit total: wall time of ``hbm_lib.fit`` (compile, sampling, post-processing, including
  the exact conditional draws of the marginal form); the sampler is compared with PyMC's own in
  ``benchmarks/samplers.py``;
* divergences after tuning, the smallest bulk ESS over mu, sigma_unit and theta, and that ESS per
  second of sampling.

Run with ``python benchmarks/eight_schools.py``.
"""

from __future__ import annotations

import logging
import time

import pandas as pd

from hbm_lib.datasets import eight_schools
from hbm_lib import check_convergence, fit, hierarchical_normal

DRAWS = 2000
TUNE = 1000
SEED = 20240601
RUNS = [
    ("marginal", 0.9),
    ("non_centered", 0.9),
    ("centered", 0.9),
    ("centered", 0.99),
]


def main() -> None:
    # keep the table readable: the divergences are in the table (PyMC logs them at ERROR level)
    logging.getLogger("pymc").setLevel(logging.CRITICAL)
    data = eight_schools()
    rows = []
    for parameterization, target_accept in RUNS:
        model = hierarchical_normal(
            data["y"],
            data["sigma"],
            units=data["school"],
            parameterization=parameterization,
            mu_prior_mean=0.0,
            mu_prior_sd=5.0,
            sigma_unit_prior=("half_cauchy", 5.0),
        )
        start = time.perf_counter()
        idata = fit(model, draws=DRAWS, tune=TUNE, chains=4, cores=2, target_accept=target_accept, seed=SEED)
        total_s = time.perf_counter() - start
        sampling_s = float(idata["posterior"].attrs["sampling_time"])

        table = check_convergence(idata, warn=False)
        ess = float(table["ess_bulk"].min())
        rows.append(
            {
                "parameterization": parameterization,
                "target_accept": target_accept,
                "sampling s": sampling_s,
                "fit total s": total_s,
                "divergences": int(table["divergences"].iloc[0]),
                "min ess_bulk": ess,
                "ess/s": ess / sampling_s,
                "worst": str(table["ess_bulk"].idxmin()),
            }
        )
    out = pd.DataFrame(rows)
    print(f"Eight Schools, mu ~ N(0, 5), tau ~ half-Cauchy(5); 4 chains x {DRAWS} draws ({TUNE} tune), 2 cores")
    print(out.to_string(index=False, float_format=lambda v: f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"))


if __name__ == "__main__":
    main()

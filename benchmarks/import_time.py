"""Benchmark: how long `import hbm_lib` takes, for pooling alone and for fitting.

Usage:  .venv/bin/python benchmarks/import_time.py

Each case runs 5 times in a fresh interpreter (bytecode caches warm: one unmeasured run first) and
reports the median wall time of the statement, measured inside the process, and which heavy
libraries it imported:

* ``import hbm_lib``: the package alone (its names are imported lazily);
* pooling: ``import hbm_lib`` and ``hbm_lib.partial_pooling`` on three units (tau estimated);
* fitting: ``import hbm_lib`` and ``hbm_lib.fit`` (imports PyMC, PyTensor and ArviZ).

Target (issue: hbm_lib 1.0): pooling under 2 s, without PyMC.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pandas as pd

from _report import report

CASES = {
    "import hbm_lib": "import hbm_lib",
    "pooling": "import hbm_lib; hbm_lib.partial_pooling([0.0, 4.0, 1.0], [1.0, 1.0, 1.0])",
    "fitting": "import hbm_lib; hbm_lib.fit",
}
PROBE = """
import json, sys, time
start = time.perf_counter()
exec({code!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "pymc": "pymc" in sys.modules, "scipy": "scipy" in sys.modules}}))
"""


def measure(code: str, repeats: int = 5) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    runs = []
    for k in range(repeats + 1):
        out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, env=env, check=True)
        if k:  # the first run writes bytecode caches
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"median_s": statistics.median(r["seconds"] for r in runs), "imports_pymc": runs[-1]["pymc"], "imports_scipy": runs[-1]["scipy"]}


def main() -> int:
    rows = [{"case": name, **measure(code)} for name, code in CASES.items()]
    report(pd.DataFrame(rows), "import_time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

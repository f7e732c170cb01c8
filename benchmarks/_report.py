"""Shared by the benchmark scripts: describe the machine, print a results table and save it.

Not a benchmark itself (``make bench`` skips files starting with an underscore).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """Architecture, cores, memory and Python version of this machine, in one line."""
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()} {os.cpu_count()} cores {mem_gb:.0f} GiB, Python {platform.python_version()}"


def report(table: pd.DataFrame, name: str, *, save: bool = True) -> pd.DataFrame:
    """Stamp ``table`` with today's date and the machine, print it, and save ``results/<name>.csv``."""
    table = table.copy()
    table.insert(0, "date", dt.date.today().isoformat())
    table.insert(1, "machine", machine())
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.drop(columns=["date", "machine"]).round(3).to_string(index=False))
    print(f"{table['date'].iloc[0]}, {table['machine'].iloc[0]}")
    if save:
        RESULTS.mkdir(exist_ok=True)
        table.to_csv(RESULTS / f"{name}.csv", index=False)
    return table

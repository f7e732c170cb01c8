"""Benchmark: how long each chapter takes to execute, and which cells take the time.

Usage:  .venv/bin/python benchmarks/chapter_times.py [chapter ...] [--top N] [--cold]

Runs each chapter (``chapters/<name>.md``; all of the book's notebooks by default) top to bottom in
a fresh kernel, as the book build does (same working directory, same kernel startup file that makes
deprecations errors), and prints its wall time and its ``--top`` slowest cells (default 5) with the
first line of each. The book's budget is 90 s per chapter, cold, on the 2-core machine. A cold run
means an empty PyTensor compile cache (``pytensor.config.base_compiledir``, where PyTensor also keeps
the numba-compiled functions); ``--cold`` empties it before each chapter, so every chapter is
measured as a reader's first run. Without it, chapters after the first may find the models of
earlier ones compiled. The table is printed and saved to ``benchmarks/results/chapter_times.csv``
when every chapter ran, with a column saying whether the run was cold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbclient
import pandas as pd
from _report import report

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
STARTUP = CHAPTERS / "_ext" / "kernel_startup.py"


def notebooks() -> list[str]:
    """The chapters that are notebooks (a kernelspec in their front matter), in the book's order."""
    toc = (ROOT / "_toc.yml").read_text()
    names = [line.split("chapters/")[1].strip() for line in toc.splitlines() if "file: chapters/" in line]
    return [n for n in names if "kernelspec" in (CHAPTERS / f"{n}.md").read_text()[:600]]


def run(name: str, top: int) -> tuple[float, pd.DataFrame]:
    notebook = jupytext.read(CHAPTERS / f"{name}.md")
    client = nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                     resources={"metadata": {"path": str(CHAPTERS)}})
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
    rows = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        timing = cell.metadata.get("execution", {})
        began, ended = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if began and ended:
            seconds = (dt.datetime.fromisoformat(ended.replace("Z", "+00:00"))
                       - dt.datetime.fromisoformat(began.replace("Z", "+00:00"))).total_seconds()
            first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith(("---", ":", "mystnb", "  "))), "")
            rows.append({"seconds": seconds, "first line": first[:90]})
    return wall, pd.DataFrame(rows).sort_values("seconds", ascending=False).head(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="empty PyTensor's compile cache before each chapter")
    args = parser.parse_args()
    compiledir = None
    if args.cold:
        import pytensor

        compiledir = Path(pytensor.config.base_compiledir)
    names = args.chapters or notebooks()
    # the kernels get the book's startup file, as in the build (chapters/_ext/book_build.py)
    ipython_dir = Path(tempfile.mkdtemp())
    (ipython_dir / "profile_default" / "startup").mkdir(parents=True)
    shutil.copyfile(STARTUP, ipython_dir / "profile_default" / "startup" / "00-deprecations-are-errors.py")
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    rows = []
    for name in names:
        if compiledir is not None:
            shutil.rmtree(compiledir, ignore_errors=True)
        wall, cells = run(name, args.top)
        rows.append({"chapter": name, "execution_s": wall, "cold": args.cold})
        print(f"== {name}: {wall:.1f} s; slowest cells:", file=sys.stderr)
        for _, cell in cells.iterrows():
            print(f"   {cell['seconds']:6.1f} s  {cell['first line']}", file=sys.stderr)
    report(pd.DataFrame(rows), "chapter_times", save=not args.chapters)
    return 0


if __name__ == "__main__":
    sys.exit(main())

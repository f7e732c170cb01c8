"""Execute the book's notebook chapters two at a time, into the build's execution cache.

Jupyter Book 1 executes the chapters one after another while Sphinx reads them, and much of a
chapter's time is single-threaded NumPy. On the book's 2-core machine, running two chapters at once
(jupyter-cache's ``local-parallel`` executor, one process per core) takes the wall time of the
build down by about a third; the ``jupyter-book build`` that follows then finds every chapter in
the cache (``Using cached notebook``) and only renders. Each chapter runs exactly as in the build:
in ``chapters/``, read by myst-nb's own reader (so the cache keys match), in a kernel whose startup
file makes deprecations errors (``kernel_startup.py``), with the build's timeout and no errors
allowed. A chapter that fails is reported here with its traceback, and the script exits non-zero.

Usage (the Makefile's ``book`` target runs it):  python chapters/_ext/execute_chapters.py
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
from pathlib import Path

import yaml
from jupyter_cache import get_cache
from jupyter_cache.executors import load_executor

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "_build" / ".jupyter_cache"
IPYTHON_DIR = ROOT / "_build" / ".ipython"
READER = {"name": "myst_nb_md", "type": "plugin"}
TIMINGS = ROOT / "benchmarks" / "results" / "chapter_times.csv"


def chapters() -> list[Path]:
    """The notebook chapters of ``_toc.yml`` (pages with a kernelspec), slowest first."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    paths = [ROOT / f"{f}.md" for f in files]
    notebooks = [p for p in paths if "kernelspec:" in p.read_text()[:600]]
    # longest first, so that the two workers finish together: the times measured by
    # benchmarks/chapter_times.py (benchmarks/results/chapter_times.csv), where there are any
    timings = {}
    if TIMINGS.is_file():
        with TIMINGS.open(newline="") as fh:
            timings = {row["chapter"]: float(row["execution_s"]) for row in csv.DictReader(fh)}
    return sorted(notebooks, key=lambda p: -timings.get(p.stem, 0.0))


def main() -> int:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    timeout = int(config.get("execute", {}).get("timeout", 900))
    # the kernels' startup file, as chapters/_ext/book_build.py installs it for the build
    startup = IPYTHON_DIR / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("kernel_startup.py"), startup / "00-deprecations-are-errors.py")
    os.environ["IPYTHONDIR"] = str(IPYTHON_DIR)

    cache = get_cache(str(CACHE))
    paths = chapters()
    for path in paths:
        cache.add_nb_to_project(str(path), read_data=READER)
    logger = logging.getLogger("execute_chapters")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    executor = load_executor("local-parallel", cache, logger=logger)
    result = executor.run_and_cache(filter_uris=[str(p) for p in paths], timeout=timeout, allow_errors=False)
    failed = [*result.excepted, *result.errored]
    for uri in failed:
        traceback = cache.get_project_record(uri).traceback
        print(f"\n== {Path(uri).name} failed:\n{traceback}", file=sys.stderr)
    if failed:
        print(f"execute_chapters: {len(failed)} chapter(s) failed: {[Path(u).name for u in failed]}", file=sys.stderr)
        return 1
    print(f"execute_chapters: {len(result.succeeded)} chapter(s) executed, {len(paths) - len(result.succeeded)} already cached")
    return 0


if __name__ == "__main__":
    sys.exit(main())

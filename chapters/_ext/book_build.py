"""Sphinx extension with the book's build-time settings and fixes.

1. Publish every notebook chapter as a Jupyter notebook. The chapters are MyST-markdown notebooks;
   for each one, the source is converted with jupytext into ``_sources/<page>.ipynb`` in the HTML
   output and the theme's download button points at it, so that a learner who clicks "download"
   gets a notebook that opens in JupyterLab, not a raw ``.md`` file. Pages that are not notebooks
   (no kernelspec in their front matter) keep their source download.
2. Drop duplicate ``<script>`` entries. sphinx-thebe 0.3.1 registers its inline configuration
   script twice under Jupyter Book 1, and the second ``const THEBE_JS_URL`` is a JavaScript error
   on every page.
3. Make deprecations errors in every chapter's kernel. The kernels that execute the chapters are
   started with ``IPYTHONDIR`` pointing at ``_build/.ipython``, whose startup file is
   ``kernel_startup.py`` (next to this file): it turns deprecation and future warnings from the
   book's stack into errors before the first cell runs, so no chapter can carry one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jupytext


def _publish_notebook(app, pagename, templatename, context, doctree):
    if doctree is None or not context.get("page_source_suffix") == ".md":
        return
    source = Path(app.env.doc2path(pagename))
    notebook = jupytext.read(source, fmt="md:myst")
    if "kernelspec" not in notebook.metadata:
        return
    target = Path(app.outdir, "_sources", pagename).with_suffix(".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, target, fmt="ipynb")
    context["sourcename"] = f"{pagename}.ipynb"
    context["page_source_suffix"] = ".ipynb"


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # an inline script may be registered with filename None or "": both mean "no file"
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _strict_kernels(app):
    """Point every kernel started by this build at an IPython profile whose startup file is
    ``kernel_startup.py``."""
    ipython_dir = Path(app.outdir).parent / ".ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("kernel_startup.py"), startup / "00-deprecations-are-errors.py")
    os.environ["IPYTHONDIR"] = str(ipython_dir)


def setup(app):
    # before any notebook executes (myst-nb runs them while Sphinx reads the sources)
    app.connect("builder-inited", _strict_kernels)
    # run before sphinx-book-theme builds its header buttons (priority 500)
    app.connect("html-page-context", _publish_notebook, priority=400)
    app.connect("html-page-context", _drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

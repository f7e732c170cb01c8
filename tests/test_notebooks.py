"""The chapters as notebooks: a learner's run of one, and the kernel settings of the book build."""

import warnings
from pathlib import Path

import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


@pytest.mark.slow
def test_pooling_chapter_runs_as_a_notebook(tmp_path, monkeypatch):
    # the book's tools, not hbm_lib's dependencies: absent where only the wheel is installed
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not CHAPTERS.is_dir():
        pytest.skip("the chapters are not here (tests run outside the repository)")
    notebook = jupytext.read(CHAPTERS / "pooling.md")
    nbformat.write(notebook, tmp_path / "pooling.ipynb")  # the file a learner downloads
    notebook = nbformat.read(tmp_path / "pooling.ipynb", as_version=4)
    # figures inline, as in JupyterLab (the test session itself runs with MPLBACKEND=agg)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(CHAPTERS)}}).execute()
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    # the figures came out as images, as on the website
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3


KERNEL_STARTUP = CHAPTERS / "_ext" / "kernel_startup.py"


@pytest.mark.parametrize(
    "module, stack",
    [("__main__", True), ("hbm_lib.models", True), ("pymc.sampling.mcmc", True), ("arviz_stats.loo", True),
     ("arviz", True), ("pandas.core.frame", True), ("jupyter_client.session", False), ("pymcx", False)],
)
@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning])
def test_chapter_kernels_make_the_stacks_deprecations_errors(module, stack, category):
    # the IPython startup file every chapter's kernel runs (chapters/_ext/book_build.py installs it)
    if not KERNEL_STARTUP.is_file():
        pytest.skip("the chapters are not here (tests run outside the repository)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what a kernel does with everything else
        exec(compile(KERNEL_STARTUP.read_text(), str(KERNEL_STARTUP), "exec"), {})

        def warn():
            warnings.warn_explicit("deprecated", category, "somewhere.py", 1, module=module)

        if stack:
            with pytest.raises(category):
                warn()
        else:
            warn()  # the kernel's own machinery is not the book's business

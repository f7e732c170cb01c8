"""A learner's path: a chapter converted to .ipynb with jupytext runs top to bottom with nbconvert."""

import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


@pytest.mark.slow
def test_pooling_chapter_runs_as_a_notebook(tmp_path):
    notebook = tmp_path / "pooling.ipynb"
    jupytext.write(jupytext.read(CHAPTERS / "pooling.md"), notebook, fmt="ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
         "--ExecutePreprocessor.timeout=900", str(notebook)],
        capture_output=True, text=True, cwd=CHAPTERS, env={"MPLBACKEND": "module://matplotlib_inline.backend_inline",
                                                           "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    executed = nbformat.read(notebook, as_version=4)
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    # the figures came out as images, as on the website
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3

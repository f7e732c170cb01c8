"""Run by every chapter's kernel before its first cell (an IPython startup file).

Deprecations from the book's stack are errors while the book builds: a chapter that calls a
deprecated function of PyMC, PyTensor, ArviZ, Bambi, xarray, pandas or the rest (or whose
libraries call one in each other) stops the build instead of rotting quietly until the function
is removed. ArviZ's ``MigrationWarning`` is a ``FutureWarning`` and is covered too.

A warning is attributed to the module that called the deprecated function; only calls made from
the chapter itself (``__main__``), from ``hbm_lib`` or from the stack below are errors, so that the
Jupyter kernel's own machinery (ipykernel, jupyter_client, zmq) cannot fail a page.
"""

import warnings

STACK = r"(__main__|hbm_lib|pymc|pytensor|arviz\w*|bambi|formulae|nutpie|xarray|pandas|numpy|scipy|matplotlib|numba)(\.|$)"

for _category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
    warnings.filterwarnings("error", category=_category, module=STACK)

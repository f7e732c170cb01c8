"""Decision summaries from posterior draws: which variant is better, and how sure are we.

Each function takes the draws of one posterior variable with a single labelled dimension (the
variants, groups or units being compared, e.g. ``rate`` with dims ``(chain, draw, variant)``) and
turns them into probabilities, estimated as the fraction of draws in which the event holds:

* :func:`prob_greater`: ``P(var[first] > var[second])`` for two labels;
* :func:`pairwise_prob_greater`: the same for every pair, as a labelled matrix;
* :func:`prob_positive`: ``P(var[label] > 0)`` for every label (e.g. a lift or a treatment
  effect).

They accept an :class:`xarray.DataTree` (its ``posterior`` group is used), such as the output
of :func:`hbm_lib.fit` (either method) or :func:`pymc.sample`,
or the posterior group itself (``idata["posterior"]`` or its :class:`xarray.Dataset`). Draws are
pooled over ``chain`` and ``draw`` (or a stacked ``sample`` dimension).

"Greater" is strict: a draw in which the two values are equal counts for neither, so
``P(A > B) + P(B > A) = 1 - P(A = B)``, which is 1 for continuous posteriors. Each probability is a
Monte Carlo estimate: with ``S`` effectively independent draws its standard error is at most
``0.5 / sqrt(S)``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from hbm_lib._validation import group_dataset

__all__ = ["prob_greater", "pairwise_prob_greater", "prob_positive"]

#: Dimensions that index draws rather than labels.
SAMPLE_DIMS = ("chain", "draw", "sample")


def prob_greater(
    posterior: xr.DataTree | xr.Dataset,
    var: str,
    first: Hashable,
    second: Hashable,
    *,
    dim: str | None = None,
) -> float:
    """Posterior probability that ``var[first] > var[second]``.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
        A fit with a ``posterior`` group, or the posterior group itself.
    var : str
        Name of a posterior variable with one dimension besides the sample dimensions.
    first, second : hashable
        Two different labels along that dimension (its coordinate values).
    dim : str, optional
        Name of the label dimension; by default the variable's only non-sample dimension.

    Returns
    -------
    float
        The fraction of draws in which ``var[first]`` exceeds ``var[second]``.

    Raises
    ------
    ValueError
        If ``var`` is not in the posterior, does not have exactly one non-sample dimension (or
        not ``dim``), has non-finite draws, or if a label is unknown (the message lists the valid
        ones) or ``first == second``.

    Examples
    --------
    >>> import numpy as np, arviz as az
    >>> rate = np.array([[[0.30, 0.50], [0.35, 0.45], [0.52, 0.48], [0.20, 0.60]]])  # 1 chain, 4 draws
    >>> idata = az.from_dict(
    ...     {"posterior": {"rate": rate}}, coords={"variant": ["A", "B"]}, dims={"rate": ["variant"]}
    ... )
    >>> prob_greater(idata, "rate", "B", "A")  # B beats A in 3 of the 4 draws
    0.75
    >>> prob_greater(idata, "rate", "A", "B")
    0.25
    """
    values, labels, dim = _draws(posterior, var, dim)
    i = _position(labels, first, "first", var, dim)
    j = _position(labels, second, "second", var, dim)
    if i == j:
        raise ValueError(
            f"first and second are the same label ({first!r}); P(x > x) is 0 by definition"
        )
    return float(np.mean(values[:, i] > values[:, j]))


def pairwise_prob_greater(
    posterior: xr.DataTree | xr.Dataset,
    var: str,
    *,
    dim: str | None = None,
) -> pd.DataFrame:
    """Matrix of ``P(var[i] > var[j])`` for every pair of labels.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
        A fit with a ``posterior`` group, or the posterior group itself.
    var : str
        Name of a posterior variable with one dimension besides the sample dimensions.
    dim : str, optional
        Name of the label dimension; by default the variable's only non-sample dimension.

    Returns
    -------
    pandas.DataFrame
        Square, with rows and columns labelled by the coordinate values of ``dim`` (both axes
        named ``dim``); entry ``[i, j]`` is ``P(var[i] > var[j])``, the diagonal is NaN. With
        continuous draws, entries ``[i, j]`` and ``[j, i]`` sum to 1.

    Raises
    ------
    ValueError
        As :func:`prob_greater`.

    Examples
    --------
    >>> import numpy as np, arviz as az
    >>> rate = np.array([[[0.30, 0.50, 0.40], [0.35, 0.45, 0.50], [0.52, 0.48, 0.10], [0.20, 0.60, 0.30]]])
    >>> idata = az.from_dict(
    ...     {"posterior": {"rate": rate}}, coords={"variant": ["A", "B", "C"]}, dims={"rate": ["variant"]}
    ... )
    >>> pairwise_prob_greater(idata, "rate")
    variant     A     B     C
    variant
    A         NaN  0.25  0.25
    B        0.75   NaN  0.75
    C        0.75  0.25   NaN
    """
    values, labels, dim = _draws(posterior, var, dim)
    k = values.shape[1]
    matrix = np.empty((k, k))
    for i in range(k):  # one row at a time: memory stays at draws x labels
        matrix[i] = np.mean(values[:, i, None] > values, axis=0)
    np.fill_diagonal(matrix, np.nan)
    return pd.DataFrame(matrix, index=labels.rename(dim), columns=labels.rename(dim))


def prob_positive(
    posterior: xr.DataTree | xr.Dataset,
    var: str,
    *,
    dim: str | None = None,
) -> pd.Series:
    """Posterior probability that ``var[label] > 0``, for every label.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
        A fit with a ``posterior`` group, or the posterior group itself.
    var : str
        Name of a posterior variable with one dimension besides the sample dimensions, e.g. a
        treatment effect or ``lift`` per group.
    dim : str, optional
        Name of the label dimension; by default the variable's only non-sample dimension.

    Returns
    -------
    pandas.Series
        Indexed by the labels (index named ``dim``), named ``"P(var > 0)"``.

    Raises
    ------
    ValueError
        If ``var`` is not in the posterior, does not have exactly one non-sample dimension (or
        not ``dim``), or has non-finite draws.

    Examples
    --------
    >>> import numpy as np, arviz as az
    >>> lift = np.array([[[0.10, -0.02], [0.05, 0.03], [0.12, 0.01], [-0.01, 0.04]]])
    >>> idata = az.from_dict(
    ...     {"posterior": {"lift": lift}}, coords={"group": ["Canada", "China"]}, dims={"lift": ["group"]}
    ... )
    >>> prob_positive(idata, "lift")
    group
    Canada    0.75
    China     0.75
    Name: P(lift > 0), dtype: float64
    """
    values, labels, dim = _draws(posterior, var, dim)
    return pd.Series(np.mean(values > 0, axis=0), index=labels.rename(dim), name=f"P({var} > 0)")


# --------------------------------------------------------------------------------------------
# helpers


def _draws(posterior: Any, var: Any, dim: Any) -> tuple[np.ndarray, pd.Index, str]:
    """The draws of ``var`` as a (draws, labels) array, the labels and the label dimension."""
    dataset = group_dataset(posterior, "posterior")
    names = [str(v) for v in dataset.data_vars]
    if not isinstance(var, str) or var not in dataset.data_vars:
        raise ValueError(f"var: {var!r} is not a variable of the posterior; it has {names}")
    array = dataset[var]
    label_dims = [str(d) for d in array.dims if d not in SAMPLE_DIMS]
    sample_dims = [d for d in array.dims if d in SAMPLE_DIMS]
    if not sample_dims:
        raise ValueError(f"var: {var!r} has no sample dimension ({', '.join(SAMPLE_DIMS)}): not draws")
    if dim is not None and dim not in label_dims:
        raise ValueError(
            f"dim: {var!r} has no dimension {dim!r}; its dimensions besides the draws are {label_dims}"
        )
    if len(label_dims) != 1:
        shape = "it is a scalar" if not label_dims else f"it has {label_dims}"
        raise ValueError(
            f"var: {var!r} must have exactly one dimension besides {tuple(sample_dims)} (the labels "
            f"to compare); {shape}"
        )
    dim = label_dims[0]
    values = array.transpose(*sample_dims, dim).to_numpy().reshape(-1, array.sizes[dim])
    if not np.isfinite(values).all():
        raise ValueError(f"var: {var!r} has non-finite draws (NaN or inf)")
    if dim in array.coords:
        labels = pd.Index(array[dim].to_numpy().tolist(), name=dim)
    else:
        labels = pd.RangeIndex(array.sizes[dim], name=dim)
    return values, labels, dim


def _position(labels: pd.Index, label: Any, name: str, var: str, dim: str) -> int:
    try:
        loc = labels.get_loc(label)
    except (KeyError, TypeError, ValueError, pd.errors.InvalidIndexError):
        loc = None
    if not isinstance(loc, (int, np.integer)):
        raise ValueError(
            f"{name}: {label!r} is not a label of {var!r} along {dim!r}; the labels are {labels.tolist()}"
        )
    return int(loc)

"""Data sets shipped with the package (no network needed)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["eight_schools"]


def eight_schools() -> pd.DataFrame:
    """The Eight Schools data of Rubin (1981).

    Estimated effects of coaching programmes on SAT-V scores in eight high schools, each from a
    separate randomized experiment, with the standard error of each estimate. These are estimates
    with standard errors, not raw scores: there are no sample sizes in the data.

    Returns
    -------
    pandas.DataFrame
        Eight rows, schools ``"A"`` to ``"H"``, with columns ``school``, ``y`` (estimated effect,
        in SAT points) and ``sigma`` (its standard error).

    Examples
    --------
    >>> eight_schools().head(3)
      school     y  sigma
    0      A  28.0   15.0
    1      B   8.0   10.0
    2      C  -3.0   16.0
    """
    with resources.files("hbm_lib").joinpath("data/eight_schools.csv").open("r") as fh:
        data = pd.read_csv(fh, dtype={"school": str, "y": float, "sigma": float})
    return data

"""From raw rows to one estimate and standard error per unit: the input of every pooling method.

* :func:`group_means`: the mean outcome of each group (a county, a school) and its standard error,
  from one row per observation;
* :func:`difference_in_means`: the treated-minus-control difference of each unit's experiment (a
  creator, a market) and its Welch standard error, from one row per user.

Both return a DataFrame indexed by the unit label (index named after the label column), with
columns ``estimate`` and ``se``, so that ``partial_pooling(table["estimate"], table["se"])`` or
``hierarchical_normal(table["estimate"], table["se"])`` take it as it is.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from hbm_lib._validation import check_choice, check_columns

__all__ = ["group_means", "difference_in_means"]


def _columns(rows, needed: dict[str, str | None]) -> None:
    check_columns(rows, "rows", needed)
    for argument, column in needed.items():
        if column is not None and argument != "outcome" and rows[column].isna().any():
            i = int(np.flatnonzero(rows[column].isna().to_numpy())[0])
            raise ValueError(f"column {column!r} ({argument}) has a missing label in row {rows.index[i]!r}")


def _outcome(rows: pd.DataFrame, outcome: str) -> np.ndarray:
    column = rows[outcome]
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
        raise ValueError(f"column {outcome!r} (outcome) must be numeric; got dtype {column.dtype}")
    y = column.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"column {outcome!r} (outcome) must be finite; got {y[i]} in row {rows.index[i]!r}")
    return y


def group_means(
    rows: pd.DataFrame,
    *,
    groups: str,
    outcome: str,
    sd: Literal["pooled", "own"] = "pooled",
) -> pd.DataFrame:
    """The mean outcome of each group and its standard error ``sd / sqrt(n)``.

    Which ``sd``:

    * ``"pooled"`` (default): one within-group standard deviation for every group, pooled over
      the groups with at least two rows, ``sqrt(sum_g (n_g - 1) s_g^2 / sum_g (n_g - 1))``. A
      group of one row then has a standard error too (the pooled sd), and small groups do not get
      the tiny or huge standard errors their own two or three rows would give by chance. It
      assumes the groups share one spread, which is what the normal hierarchical model of their
      means assumes about the noise anyway.
    * ``"own"``: each group's own sample standard deviation; every group needs at least two rows
      (a group of one is refused, naming it) and a non-zero spread.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per observation (a house, a pupil).
    groups, outcome : str
        Column names: the group label and the numeric outcome.
    sd : {"pooled", "own"}, default "pooled"
        See above.

    Returns
    -------
    pandas.DataFrame
        Indexed by group label (index named ``groups``), in order of first appearance, with
        columns ``n``, ``estimate`` (the group mean), ``sd`` (the standard deviation used) and
        ``se``.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"county": ["a", "a", "a", "b"], "log_radon": [1.0, 2.0, 3.0, 5.0]})
    >>> group_means(rows, groups="county", outcome="log_radon")
            n  estimate   sd       se
    county
    a       3       2.0  1.0  0.57735
    b       1       5.0  1.0  1.00000
    """
    _columns(rows, {"groups": groups, "outcome": outcome})
    sd = check_choice(sd, "sd", ("pooled", "own"))
    y = _outcome(rows, outcome)
    frame = pd.DataFrame({"g": rows[groups].to_numpy(), "y": y})
    stats = frame.groupby("g", sort=False)["y"].agg(["count", "mean", "var"])
    n = stats["count"].to_numpy()
    if sd == "own":
        small = stats.index[n < 2]
        if len(small):
            raise ValueError(
                f"groups: {small[0]!r} has a single row, so its own sd is undefined; use sd='pooled' "
                "(one within-group sd for all groups) or drop the group"
            )
        spread = np.sqrt(stats["var"].to_numpy())
    else:
        df = n - 1
        if df.sum() == 0:
            raise ValueError("groups: every group has a single row, so no within-group sd can be estimated")
        pooled = np.sqrt(np.nansum(df * stats["var"].to_numpy()) / df.sum())
        spread = np.full(len(n), pooled)
    if (spread <= 0).any():
        bad = stats.index[spread <= 0][0]
        raise ValueError(f"groups: the within-group sd is 0 (for {bad!r}), so the standard errors would be 0")
    return pd.DataFrame(
        {"n": n.astype(np.int64), "estimate": stats["mean"].to_numpy(), "sd": spread, "se": spread / np.sqrt(n)},
        index=pd.Index(stats.index.to_numpy(), name=groups),
    )


def difference_in_means(
    rows: pd.DataFrame,
    *,
    unit: str,
    treated: str,
    outcome: str,
    groups: str | None = None,
) -> pd.DataFrame:
    """Each unit's treated-minus-control difference in mean outcome and its Welch standard error.

    For an experiment run separately in many units (one A/B test per creator): the estimate of
    unit ``i``'s effect is ``mean_treated - mean_control`` over its own rows, with standard error
    ``sqrt(s_t^2 / n_t + s_c^2 / n_c)`` (sample variances; Welch's, which does not assume equal
    variances in the two arms).

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per user.
    unit, treated, outcome : str
        Column names: the unit label, the arm (0 for control, 1 for treated) and the numeric
        outcome.
    groups : str, optional
        Column name of a group label that is constant within each unit (a genre); carried over.

    Returns
    -------
    pandas.DataFrame
        Indexed by unit label (index named ``unit``), in order of first appearance, with columns
        ``groups`` (if given), ``n_control``, ``n_treated``, ``n``, ``mean_control``,
        ``mean_treated``, ``estimate`` and ``se``.

    Raises
    ------
    ValueError
        If a column is missing, an outcome is not finite, ``treated`` is not 0/1, an arm of a
        unit has fewer than 2 rows, a unit has no variance in either arm, or a unit is in more
        than one group.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"creator": ["a"] * 4, "treated": [0, 0, 1, 1], "revenue": [1.0, 1.0, 2.0, 4.0]})
    >>> difference_in_means(rows, unit="creator", treated="treated", outcome="revenue")[["estimate", "se"]]
             estimate   se
    creator
    a             2.0  1.0
    """
    _columns(rows, {"unit": unit, "treated": treated, "outcome": outcome, "groups": groups})
    y = _outcome(rows, outcome)
    arm = rows[treated]
    if pd.api.types.is_bool_dtype(arm.dtype):
        arm = arm.astype(int)
    if not arm.isin([0, 1]).all():
        bad = arm[~arm.isin([0, 1])].iloc[0]
        raise ValueError(f"column {treated!r} (treated) must be 0 or 1; got {bad!r}")
    frame = pd.DataFrame({"u": rows[unit].to_numpy(), "arm": arm.to_numpy().astype(int), "y": y})
    stats = frame.groupby(["u", "arm"], sort=False)["y"].agg(["count", "mean", "var"]).unstack("arm")
    order = pd.unique(frame["u"])
    stats = stats.reindex(order)
    counts = stats["count"].reindex(columns=[0, 1]).fillna(0).astype(int)
    short = counts[(counts < 2).any(axis=1)]
    if len(short):
        raise ValueError(
            f"unit {short.index[0]!r} has an empty or single-row arm (control {short.iloc[0, 0]}, "
            f"treated {short.iloc[0, 1]}); each arm needs at least 2 rows for a standard error"
        )
    out = pd.DataFrame(
        {
            "n_control": counts[0].to_numpy(),
            "n_treated": counts[1].to_numpy(),
            "mean_control": stats[("mean", 0)].to_numpy(),
            "mean_treated": stats[("mean", 1)].to_numpy(),
        },
        index=pd.Index(order, name=unit),
    )
    out.insert(2, "n", out["n_control"] + out["n_treated"])
    out["estimate"] = out["mean_treated"] - out["mean_control"]
    out["se"] = np.sqrt(stats[("var", 1)].to_numpy() / out["n_treated"] + stats[("var", 0)].to_numpy() / out["n_control"])
    if groups is not None:
        labels = rows.groupby(unit, sort=False)[groups].agg(["nunique", "first"]).reindex(order)
        mixed = labels.index[labels["nunique"] > 1]
        if len(mixed):
            raise ValueError(f"unit {mixed[0]!r} appears in more than one {groups!r}")
        out.insert(0, groups, labels["first"].to_numpy())
    if (out["se"] <= 0).any():
        raise ValueError(f"unit {out.index[out['se'] <= 0][0]!r} has zero variance in both arms, so its standard error is 0")
    return out

"""Plotting helpers shared by the chapters. Each draws on a matplotlib ``Axes`` and returns it."""

from __future__ import annotations

import contextlib

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike

from hbm_lib._validation import align, as_finite_1d, as_positive_1d, check_same_length

__all__ = ["book_style", "use_book_style", "shrinkage", "BOOK_RC"]


#: The book's matplotlib settings: opaque white backgrounds (figures stay readable on the website's
#: dark theme), a readable font size, light grids, no top/right spines, a sharp resolution.
BOOK_RC = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "figure.dpi": 110,
    "figure.figsize": (7.0, 4.2),
    "font.size": 10.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "figure.constrained_layout.use": True,
}


def book_style() -> contextlib.AbstractContextManager:
    """The book's matplotlib settings for the figures drawn inside a ``with`` block only.

    Nothing changes outside the block, so a library user's own settings are left alone.

    Examples
    --------
    >>> import matplotlib as mpl
    >>> with book_style():
    ...     mpl.rcParams["axes.grid"]
    True
    """
    return mpl.rc_context(BOOK_RC)


def use_book_style() -> None:
    """Set the book's matplotlib settings (``BOOK_RC``) for the rest of the session.

    For the chapters' notebooks, where every figure should look alike. It changes matplotlib's
    global state: in your own code, prefer ``with book_style():`` around the figures.
    """
    mpl.rcParams.update(BOOK_RC)


def shrinkage(
    raw: ArrayLike,
    pooled: ArrayLike,
    size: ArrayLike,
    *,
    pooled_mean: float | ArrayLike | None = None,
    truth: ArrayLike | None = None,
    ax: Axes | None = None,
    cmap: str = "viridis",
    size_label: str = "sample size",
    pooled_label: str = "partially pooled",
) -> Axes:
    """Arrows from each unit's own estimate to its partially pooled one, against sample size.

    pandas Series are paired by their index (reordered to the index of ``raw``; a Series with
    other units is refused with a ``ValueError``), plain arrays by position.

    Parameters
    ----------
    raw, pooled : array-like
        No-pooling and partial-pooling estimates, one per unit.
    size : array-like
        Sample size of each unit (positive); the x axis is logarithmic and arrows are coloured by it.
    pooled_mean : float or array-like, optional
        The mean(s) the units are pulled towards, drawn as a dashed line (a scalar) or dashes per unit.
    truth : array-like, optional
        True values, drawn as small black crosses (simulations only).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if omitted.
    cmap : str, default "viridis"
        Colour map of the sample sizes.
    size_label : str, default "sample size"
        Label of the x axis and the colour bar.
    pooled_label : str, default "partially pooled"
        Legend entry of the pooled estimates (e.g. ``"full Bayes"`` for posterior means).

    Returns
    -------
    matplotlib.axes.Axes
    """
    # pandas inputs reordered to raw's index; scalars, arrays and None pass through
    raw, pooled, size, truth, pooled_mean = align(raw=raw, pooled=pooled, size=size, truth=truth,
                                                  pooled_mean=pooled_mean).values()
    raw = as_finite_1d(raw, "raw")
    pooled = as_finite_1d(pooled, "pooled")
    size = as_positive_1d(size, "size")
    check_same_length(raw=raw, pooled=pooled, size=size)
    if ax is None:
        _, ax = plt.subplots()
    norm = mpl.colors.LogNorm(vmin=size.min(), vmax=max(size.max(), size.min() * 1.01))
    colours = mpl.colormaps[cmap](norm(size))
    ax.set_xscale("log")
    ax.scatter(size, raw, s=22, facecolors="none", edgecolors=colours, linewidths=1.2, label="own estimate", zorder=3)
    ax.scatter(size, pooled, s=22, color=colours, label=pooled_label, zorder=4)
    for x, a, b, c in zip(size, raw, pooled, colours):
        if abs(b - a) > 1e-12:
            ax.annotate("", xy=(x, b), xytext=(x, a), arrowprops={"arrowstyle": "->", "color": c, "lw": 1.0, "alpha": 0.8})
    if truth is not None:
        truth = as_finite_1d(truth, "truth")
        check_same_length(raw=raw, truth=truth)
        ax.scatter(size, truth, marker="x", s=20, color="black", label="truth", zorder=5)
    if pooled_mean is not None:
        pm_arr = np.broadcast_to(np.asarray(pooled_mean, dtype=float), raw.shape)
        if np.ptp(pm_arr) == 0:
            ax.axhline(pm_arr[0], color="0.4", ls="--", lw=1, label="pooled mean")
        else:
            ax.scatter(size, pm_arr, marker="_", s=60, color="0.4", label="group mean", zorder=2)
    colorbar = ax.figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=size_label)
    ticks = _round_ticks(size.min(), size.max())
    colorbar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    # on a log axis spanning under two decades matplotlib also labels minor ticks (6 x 10^0):
    # keep only the 1-2-5 labels on both axes
    ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    colorbar.ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax.set_xlabel(f"{size_label} (log scale)")
    ax.legend(loc="best", fontsize=9)
    return ax


def _round_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks spanning [lo, hi] on a log axis."""
    decades = 10.0 ** np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    ticks = [m * d for d in decades for m in (1, 2, 5) if lo <= m * d <= hi]
    return ticks if len(ticks) >= 2 else [lo, hi]

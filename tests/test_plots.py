"""Tests for hbm_lib.plots: the helpers draw what they say and reject bad input."""

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hbm_lib.plots import _round_ticks, shrinkage, use_book_style  # noqa: E402


def test_shrinkage_draws_one_arrow_per_moved_unit():
    raw, pooled, size = np.array([1.0, 5.0, 3.0]), np.array([2.0, 4.0, 3.0]), np.array([3, 30, 300])
    ax = shrinkage(raw, pooled, size, pooled_mean=3.0, truth=[2.5, 3.5, 3.0])
    arrows = [c for c in ax.get_children() if isinstance(c, matplotlib.text.Annotation)]
    assert len(arrows) == 2  # the third unit does not move
    assert ax.get_xscale() == "log"
    plt.close(ax.figure)


def test_shrinkage_pairs_series_by_label_and_refuses_other_units():
    raw = pd.Series([1.0, 5.0, 3.0], index=["a", "b", "c"])
    pooled = pd.Series([3.0, 4.0, 2.0], index=["c", "b", "a"])  # a -> 2, b -> 4, c -> 3: c does not move
    size = pd.Series([300, 30, 3], index=["c", "b", "a"])
    ax = shrinkage(raw, pooled, size, pooled_label="full Bayes")
    arrows = [c for c in ax.get_children() if isinstance(c, matplotlib.text.Annotation)]
    starts = sorted((a.xyann[0], a.xyann[1], a.xy[1]) for a in arrows)  # (size, raw, pooled)
    assert starts == [(3.0, 1.0, 2.0), (30.0, 5.0, 4.0)]
    assert "full Bayes" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="raw and pooled are labelled by different units"):
        shrinkage(raw, pooled.rename({"a": "z"}), size)


def test_shrinkage_labels_only_the_round_ticks_on_both_log_axes():
    # sizes spanning less than two decades: matplotlib would also label minor ticks (6 x 10^0)
    raw, pooled, size = np.arange(4.0), np.arange(4.0) + 0.5, np.array([3, 8, 20, 80])
    ax = shrinkage(raw, pooled, size)
    ax.figure.canvas.draw()
    colorbar_axis = ax.figure.axes[-1].yaxis
    for axis in (ax.xaxis, colorbar_axis):
        minor = [t.get_text() for t in axis.get_ticklabels(minor=True) if t.get_visible()]
        assert not [m for m in minor if m], minor
    major = [t.get_text() for t in colorbar_axis.get_ticklabels() if t.get_text()]
    assert major == ["5", "10", "20", "50"]
    plt.close(ax.figure)


def test_book_style_gives_opaque_figures():
    use_book_style()
    fig = plt.figure()
    assert fig.get_facecolor()[3] == 1.0
    assert matplotlib.rcParams["savefig.transparent"] is False
    plt.close(fig)


def test_round_ticks_span_the_range():
    assert _round_ticks(3, 80) == [5, 10, 20, 50]
    assert _round_ticks(30, 5000) == [50, 100, 200, 500, 1000, 2000, 5000]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"raw": [1.0, 2.0], "pooled": [1.0], "size": [1, 2]}, "lengths differ"),
        ({"raw": [1.0, 2.0], "pooled": [1.0, 2.0], "size": [0, 2]}, "size must be positive"),
        ({"raw": [1.0, np.nan], "pooled": [1.0, 2.0], "size": [1, 2]}, "raw must be finite"),
    ],
)
def test_shrinkage_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shrinkage(**kwargs)

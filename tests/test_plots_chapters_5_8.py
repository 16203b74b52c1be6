"""The figures of chapters 5-8 (end of dpolib.course.plots) draw the numbers given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # tests never open windows

import matplotlib.pyplot as plt
import numpy as np
import pytest

from dpolib.course.plots import plot_letter_heatmap, plot_sweep_table


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_letter_heatmap_annotates_every_value_on_a_log_scale():
    rows = {"reference": [0.355, 1.0, 5e-7], "epoch 30": [0.994, 0.806, 8.6e-5]}
    fig = plot_letter_heatmap(rows, ["p", "a|pizz", "a|past"], title="t")
    texts = _texts(fig)
    assert {"0.355", "1.000", "5e-07", "0.806", "9e-05"} <= set(texts)
    image = fig.axes[0].images[0]
    assert np.allclose(image.get_array()[0, 2], np.log10(5e-7))
    assert fig.axes[0].get_title() == "t"
    plt.close(fig)


@pytest.mark.parametrize(
    "rows, columns",
    [({}, ["a"]), ({"m": [0.5]}, ["a", "b"]), ({"m": [1.5]}, ["a"])],
)
def test_letter_heatmap_rejects_bad_input(rows, columns):
    with pytest.raises(ValueError):
        plot_letter_heatmap(rows, columns)


def test_sweep_table_one_panel_per_metric_with_formatted_cells():
    table = {
        "pizza": {(b, lr): b * lr for b in (0.1, 1.0) for lr in (1e-4, 3e-4)},
        "weight": {(b, lr): 0.5 for b in (0.1, 1.0) for lr in (1e-4, 3e-4)},
    }
    fig = plot_sweep_table(
        table, [0.1, 1.0], [1e-4, 3e-4], formats={"pizza": "{:.1e}"}, title="s"
    )
    assert [ax.get_title() for ax in fig.axes] == ["pizza", "weight"]
    assert "3.0e-05" in _texts(fig) and "0.5" in _texts(fig)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["0.0001", "0.0003"]
    plt.close(fig)


def test_sweep_table_needs_every_cell():
    with pytest.raises(ValueError, match="no value"):
        plot_sweep_table({"pizza": {(0.1, 1e-4): 1.0}}, [0.1, 1.0], [1e-4])

"""dpolib.course.plots: the figures show the numbers they are given, label everything,
and leave matplotlib's state alone."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # tests never open windows

import matplotlib.pyplot as plt
import numpy as np
import pytest

from dpolib import OTHER, distribution_table, dpo_loss, drift
from dpolib.course.plots import (
    HISTORY_PANELS,
    plot_comparison_graph,
    plot_distribution_heatmap,
    plot_drift_bars,
    plot_history,
    plot_loss_plane,
    plot_token_mask,
)

TRL_METRICS = [
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
]


def _history(n: int = 5, shift: float = 0.0) -> list[dict]:
    """A made-up but well-formed DPO log: records built by dpo_loss itself, as
    run_dpo_episodes does."""
    import torch

    rows = []
    for i in range(n):
        pc = torch.tensor([-2.0 + 0.3 * i + shift, -1.5 + 0.2 * i])
        pr = torch.tensor([-2.0 - 0.5 * i, -3.0 - 0.4 * i])
        ref = torch.tensor([-2.0, -1.5]), torch.tensor([-2.0, -3.0])
        rows.append(
            {
                "epoch": i + 1,
                "step": i + 1,
                **dpo_loss(pc, pr, *ref, beta=0.5).metrics(),
                "exact/KL": 0.1 * i,
            }
        )
    return rows


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _axes_with_data(fig):
    return [ax for ax in fig.axes if ax.lines or ax.images or ax.patches]


def test_history_plots_every_trl_metric_with_its_values():
    hist = _history()
    fig = plot_history(hist)
    plotted = {}
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() == "epoch" and ax.get_ylabel()
        for line in ax.lines:
            plotted.setdefault(ax.get_title(), []).append(line)
    keys = [k for _, _, ks in HISTORY_PANELS for k in ks]
    assert sorted(keys) == sorted(TRL_METRICS)
    for title, _, ks in HISTORY_PANELS:
        lines = plotted[title]
        assert len(lines) == len(ks)
        for line, key in zip(lines, ks):
            assert list(line.get_xdata()) == [r["epoch"] for r in hist]
            assert np.allclose(line.get_ydata(), [r[key] for r in hist])
    # the first record is policy == reference: loss log 2, accuracy 0
    assert (
        math.isclose(hist[0]["loss"], math.log(2), rel_tol=1e-6)
        and hist[0]["rewards/accuracies"] == 0
    )


def test_history_extra_panels_mark_and_step_axis():
    fig = plot_history(
        _history(),
        extra={"KL": ("nats", ["exact/KL"])},
        x="step",
        mark=3,
        mark_label="stop",
        title="a run",
    )
    assert fig._suptitle.get_text() == "a run"
    kl = [ax for ax in fig.axes if ax.get_title() == "KL"]
    assert len(kl) == 1 and np.allclose(
        kl[0].lines[0].get_ydata(), [0.1 * i for i in range(5)]
    )
    assert all(ax.get_xlabel() == "optimizer step" for ax in fig.axes)
    # the mark is drawn in every panel, labelled once
    marks = [ln for ax in fig.axes for ln in ax.lines if list(ln.get_xdata()) == [3, 3]]
    assert len(marks) == len(fig.axes)
    assert sum(ln.get_label() == "stop" for ln in marks) == 1
    # 7 panels in a 3-column grid: the two empty cells are removed, not left blank
    assert len(fig.axes) == len(HISTORY_PANELS) + 1


def test_history_compares_runs_with_one_line_style_each():
    fig = plot_history({"a": _history(), "b": _history(3, shift=-0.5)})
    loss_ax = next(ax for ax in fig.axes if ax.get_title() == "loss")
    assert [ln.get_label() for ln in loss_ax.lines] == ["a", "b"]
    assert len({ln.get_linestyle() for ln in loss_ax.lines}) == 2
    assert len(loss_ax.lines[1].get_xdata()) == 3  # runs may have different lengths


@pytest.mark.parametrize(
    "bad, error",
    [
        ([], ValueError),
        ({"a": []}, ValueError),
        ("loss", TypeError),
        (42, TypeError),
        ([1, 2], TypeError),
    ],
)
def test_history_refuses_bad_input(bad, error):
    with pytest.raises(error):
        plot_history(bad)


def test_history_names_a_missing_metric():
    hist = _history()
    del hist[2]["logps/chosen"]
    with pytest.raises(ValueError, match="logps/chosen.*step 3"):
        plot_history(hist)
    with pytest.raises(ValueError, match="x must be"):
        plot_history(_history(), x="time")
    with pytest.raises(TypeError, match="extra"):
        plot_history(_history(), extra={"KL": "exact/KL"})


def test_heatmap_shows_the_table_and_the_difference():
    table = {
        "ann": {"pizza": 0.7, "soup": 0.3, OTHER: 0.0},
        "bob": {"pizza": 0.1, "soup": 0.9, OTHER: 0.0},
    }
    fig = plot_distribution_heatmap(table)
    ax = fig.axes[0]
    assert np.allclose(
        ax.images[0].get_array(), [[0.7, 0.3], [0.1, 0.9]]
    )  # OTHER without mass: no column
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pizza", "soup"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ann", "bob"]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert fig.axes[1].get_ylabel() == "probability"  # the colour bar
    after = {
        "ann": {"pizza": 0.8, "soup": 0.1, OTHER: 0.1},
        "bob": {"pizza": 0.1, "soup": 0.9, OTHER: 0.0},
    }
    fig = plot_distribution_heatmap(after, reference=table, colorbar_label="change")
    diff = fig.axes[0].images[0].get_array()
    assert np.allclose(
        diff, [[0.1, -0.2, 0.1], [0.0, 0.0, 0.0]]
    )  # garbled mass appears as its own column
    assert fig.axes[0].images[0].get_clim() == pytest.approx(
        (-0.2, 0.2)
    )  # symmetric: white means no change
    assert fig.axes[1].get_ylabel() == "change"


def test_heatmap_refuses_bad_input():
    with pytest.raises(ValueError):
        plot_distribution_heatmap({})
    with pytest.raises(ValueError, match="no distribution"):
        plot_distribution_heatmap({"ann": {"pizza": 1.0}}, people=["ann", "zoe"])


def test_drift_bars_heights_threshold_and_log_axis():
    drifts = {
        "plain": {"ann": {"tvd": 0.3, "kl": 0.5}, "bob": {"tvd": 0.1, "kl": 0.2}},
        "anchored": {
            "ann": {"tvd": 0.001, "kl": 0.0001},
            "bob": {"tvd": 0.002, "kl": 0.0003},
        },
    }
    fig = plot_drift_bars(drifts, threshold=0.02, log=True)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.3, 0.1, 0.001, 0.002]
    assert (
        ax.get_yscale() == "log"
        and ax.get_ylabel()
        and ax.get_xlabel()
        and ax.get_title()
    )
    assert any(list(ln.get_ydata()) == [0.02, 0.02] for ln in ax.lines)
    assert [t.get_text() for t in ax.get_legend().get_texts()][-2:] == [
        "plain",
        "anchored",
    ]
    fig = plot_drift_bars(drifts, metric="kl")
    assert [p.get_height() for p in fig.axes[0].patches] == [0.5, 0.2, 0.0001, 0.0003]
    assert "KL" in fig.axes[0].get_ylabel()


def test_drift_bars_refuse_bad_input():
    with pytest.raises(ValueError, match="metric"):
        plot_drift_bars({"a": {"ann": {"tvd": 0.1}}}, metric="js")
    with pytest.raises(ValueError):
        plot_drift_bars({})
    with pytest.raises(ValueError, match="same people"):
        plot_drift_bars({"a": {"ann": {"tvd": 0.1}}, "b": {"bob": {"tvd": 0.1}}})
    with pytest.raises(ValueError, match="no 'kl'"):
        plot_drift_bars({"a": {"ann": {"tvd": 0.1}}}, metric="kl")


def test_real_model_tables_and_drift_plot(food_pair):
    policy, reference, tokenizer = food_pair
    people = ["ravin", "maya"]
    fig = plot_distribution_heatmap(distribution_table(reference, tokenizer, people))
    assert fig.axes[0].images[0].get_array().shape == (2, 16)
    fig = plot_drift_bars({"same model": drift(policy, reference, tokenizer, people)})
    assert max(p.get_height() for p in fig.axes[0].patches) < 1e-6


def test_no_global_matplotlib_state_changes():
    before = dict(plt.rcParams)
    plot_history(_history())
    plot_distribution_heatmap({"ann": {"pizza": 1.0}})
    plot_drift_bars({"a": {"ann": {"tvd": 0.1, "kl": 0.1}}})
    after = dict(plt.rcParams)
    assert {
        k
        for k in before
        if before[k] != after[k]
        and not (isinstance(before[k], float) and math.isnan(before[k]))
    } == set()


def test_figures_are_returned_not_shown():
    fig = plot_history(_history())
    assert plt.fignum_exists(
        fig.number
    )  # still open: the notebook's plt.show() displays it once


def _node_colors(fig) -> list:
    return [tuple(c.get_facecolor()[0]) for c in fig.axes[0].collections]


def test_comparison_graph_marks_responses_that_never_lost():
    from matplotlib.colors import to_rgba

    # 2 beats 0 twice, 0 and 1 split 1:1, 3 is never compared
    fig = plot_comparison_graph(4, [2, 2, 0, 1], [0, 0, 1, 0])
    colors = _node_colors(fig)
    assert len(colors) == 4
    assert colors[2] == to_rgba("C3")  # won, never lost
    assert colors[0] == colors[1] == to_rgba("C0")
    assert colors[3] == to_rgba("0.85")  # not in any pair
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"2:0", "1:1"} <= labels
    assert fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="indices"):
        plot_comparison_graph(3, [0], [5])
    with pytest.raises(ValueError, match="non-empty"):
        plot_comparison_graph(3, [], [])


def test_loss_plane_labels_and_trajectory():
    fig = plot_loss_plane(0.5, trajectory=[(0, 0), (1, -2), (0.5, -6)])
    ax = fig.axes[0]
    assert "u(y_w)" in ax.get_xlabel() and "u(y_l)" in ax.get_ylabel()
    (path,) = [line for line in ax.get_lines() if line.get_label() == "run"]
    assert list(path.get_xdata()) == [0, 1, 0.5]
    plt.close(fig)
    with pytest.raises(ValueError, match="beta"):
        plot_loss_plane(0)
    with pytest.raises(ValueError, match="trajectory"):
        plot_loss_plane(1.0, trajectory=[1, 2, 3])


def test_token_mask_colours_exactly_the_masked_targets():
    from matplotlib.colors import to_rgba

    from dpolib import build_batch
    from dpolib.pizza.food import food_tokenizer

    tok = food_tokenizer()
    batch = build_batch(tok, ["ravin likes ", "leo likes "], ["pizza", "dumplings"], 32)
    fig = plot_token_mask(tok, batch)
    cells = [p for p in fig.axes[0].patches if p.get_width() < 1]
    assert len(cells) == batch.targets.numel()
    counted = sum(
        p.get_facecolor() in (to_rgba("#9ecae1"), to_rgba("#fdae6b")) for p in cells
    )
    assert counted == int(batch.completion_mask.sum())
    eos = sum(p.get_facecolor() == to_rgba("#fdae6b") for p in cells)
    assert eos == 2  # one end token per row
    plt.close(fig)

"""Training-diagnostic figures: DPO history curves (TRL's metric names), per-person food
heat maps, drift bars.

Every function draws a new figure in the course style (`dpolib.course.viz.course_style`,
applied only while the figure is built: matplotlib's global settings are left alone) and
returns it without showing it, so a notebook cell ends with `plt.show()` once per
figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..errors import describe
from ..evaluate import OTHER
from .viz import course_style

__all__ = [
    "HISTORY_PANELS",
    "plot_distribution_heatmap",
    "plot_drift_bars",
    "plot_history",
    "plot_letter_heatmap",
    "plot_sweep_table",
]

# One panel per question a DPO log answers, with the metric names Hugging Face TRL's
# DPOTrainer logs. (title, y-axis label, metrics drawn in that panel)
HISTORY_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("loss", "DPO loss (nats)", ("loss",)),
    (
        "implicit rewards",
        "beta * log-ratio (nats)",
        ("rewards/chosen", "rewards/rejected", "rewards/margins"),
    ),
    ("accuracy", "share of pairs ordered right", ("rewards/accuracies",)),
    # chosen and rejected apart: the chosen curve moves by tenths of a nat, the rejected
    # by tens, and a fall of the chosen one (likelihood displacement) must stay visible
    ("chosen log-prob", "log pi(y_w|x) (nats)", ("logps/chosen",)),
    ("rejected log-prob", "log pi(y_l|x) (nats)", ("logps/rejected",)),
)
_LINESTYLES = ("-", "--", ":", "-.")
_COLORS = {  # the same metric has the same colour in every figure of the book
    "loss": "C0",
    "rewards/chosen": "C2",
    "rewards/rejected": "C3",
    "rewards/margins": "C0",
    "rewards/accuracies": "C0",
    "logps/chosen": "C2",
    "logps/rejected": "C3",
}


def _as_runs(history: Any) -> dict[str, list[dict]]:
    """One history (a list of dicts) or a mapping label -> history, as a mapping."""
    if isinstance(history, Mapping):
        runs = {str(k): list(v) for k, v in history.items()}
    elif isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        runs = {"": list(history)}
    else:
        raise TypeError(
            f"history must be the list of dicts returned by run_dpo_episodes, or a "
            f"dict of such lists by label; "
            f"got {type(history).__name__}"
        )
    if not runs:
        raise ValueError("no runs to plot: pass at least one history")
    for label, rows in runs.items():
        if not rows:
            raise ValueError(
                f"history {label!r} is empty: train for at least one epoch before "
                f"plotting it"
            )
        if not all(isinstance(r, Mapping) for r in rows):
            raise TypeError(
                f"history {label!r} must be a list of dicts (one per step), as "
                f"run_dpo_episodes returns"
            )
    return runs


def _series(rows: list[dict], key: str, label: str) -> list[float]:
    missing = [i for i, r in enumerate(rows) if key not in r]
    if missing:
        raise ValueError(
            f"metric {key!r} is missing from step {missing[0] + 1} of history "
            f"{label!r}; "
            f"it has {sorted(rows[missing[0]])}"
        )
    return [float(r[key]) for r in rows]


def plot_history(
    history: Sequence[dict] | Mapping[str, Sequence[dict]],
    *,
    extra: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    x: str = "epoch",
    title: str | None = None,
    mark: float | None = None,
    mark_label: str | None = None,
) -> Figure:
    """Curves of a DPO run's log: loss, rewards/{chosen,rejected,margins},
    rewards/accuracies, logps/{chosen,rejected}.

    `history` is what `run_dpo_episodes` returns, or a dict label -> history to compare
    runs (one line style per run). `extra` adds panels for other keys of the records,
    {panel title: (y-axis label, [keys])}: e.g. a KL to the reference measured after
    each step and stored in the records as `record["exact/KL"]`. `mark` draws a vertical
    dashed line at that x (e.g. where a run was stopped).
    """
    runs = _as_runs(history)
    if x not in ("epoch", "step"):
        raise ValueError(f"x must be 'epoch' or 'step', got {x!r}")
    if len(runs) > len(_LINESTYLES):
        raise ValueError(
            f"at most {len(_LINESTYLES)} runs fit in one figure (one line style "
            f"each), got {len(runs)}"
        )
    panels = list(HISTORY_PANELS)
    for name, spec in (extra or {}).items():
        if not (
            isinstance(spec, tuple)
            and len(spec) == 2
            and isinstance(spec[0], str)
            and not isinstance(spec[1], str)
            and len(spec[1]) > 0
        ):
            raise TypeError(
                f"extra[{name!r}] must be (y-axis label, [metric keys]), got {spec!r}"
            )
        panels.append((name, spec[0], tuple(spec[1])))
    xs = {label: _series(rows, x, label) for label, rows in runs.items()}
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    with course_style():
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(3.4 * ncols, 2.5 * nrows), squeeze=False
        )
        for k, (ax, (name, ylabel, keys)) in enumerate(zip(axes.flat, panels)):
            for style, (label, rows) in zip(_LINESTYLES, runs.items()):
                for key in keys:
                    curve = (
                        key
                        if len(runs) == 1
                        else (label if len(keys) == 1 else f"{key} ({label})")
                    )
                    show_label = len(keys) > 1 or len(runs) > 1
                    ax.plot(
                        xs[label],
                        _series(rows, key, label),
                        linestyle=style,
                        color=_COLORS.get(key),
                        label=curve if show_label else None,
                    )
            if mark is not None:
                # the mark's legend entry once, in the first panel
                ax.axvline(
                    mark,
                    color="0.4",
                    linewidth=0.8,
                    linestyle="--",
                    label=mark_label if k == 0 else None,
                )
            ax.set_title(name)
            ax.set_xlabel("epoch" if x == "epoch" else "optimizer step")
            ax.set_ylabel(ylabel)
            if ax.get_legend_handles_labels()[1]:
                ax.legend(fontsize="x-small")
        for ax in list(axes.flat)[len(panels) :]:
            ax.remove()  # an empty grid cell would look like a missing plot
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


def _matrix(
    table: Mapping[str, Mapping[str, float]], rows: Sequence[str], cols: Sequence[str]
) -> np.ndarray:
    missing = [r for r in rows if r not in table]
    if missing:
        raise ValueError(
            f"no distribution for {missing}; the table has {sorted(table)}"
        )
    return np.array([[float(table[r].get(c, 0.0)) for c in cols] for r in rows])


def plot_distribution_heatmap(
    table: Mapping[str, Mapping[str, float]],
    *,
    reference: Mapping[str, Mapping[str, float]] | None = None,
    people: Sequence[str] | None = None,
    foods: Sequence[str] | None = None,
    title: str | None = None,
    annotate: bool = True,
    colorbar_label: str | None = None,
) -> Figure:
    """Heat map of p(food | person): one row per person, one column per food (OTHER last
    when it has mass).

    With `reference`, the map shows the difference table - reference instead (red up,
    blue down), so a drift from the reference model is visible person by person.
    """
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            "table must be a non-empty dict person -> {food: probability}, e.g. "
            "distribution_table(model, tokenizer)"
        )
    people = list(people) if people is not None else list(table)
    if foods is None:
        foods = [f for f in next(iter(table.values())) if f != OTHER]
        tables = [table] + ([reference] if reference is not None else [])
        # the garbled mass gets a column only when it is visible at two decimals
        if any(t[p].get(OTHER, 0.0) >= 0.005 for t in tables for p in people if p in t):
            foods.append(OTHER)
    foods = list(foods)
    if not people or not foods:
        raise ValueError("nothing to draw: people and foods must be non-empty")
    values = _matrix(table, people, foods)
    if reference is not None:
        values = values - _matrix(reference, people, foods)
        limit = max(float(np.abs(values).max()), 1e-9)
        cmap, vmin, vmax, bar_label = (
            "RdBu_r",
            -limit,
            limit,
            "difference in probability",
        )
    else:
        cmap, vmin, vmax, bar_label = (
            "viridis",
            0.0,
            max(float(values.max()), 1e-9),
            "probability",
        )
    with course_style():
        fig, ax = plt.subplots(
            figsize=(0.45 * len(foods) + 2.2, 0.32 * len(people) + 1.6)
        )
        image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.grid(False)  # grid lines would cut through the cells
        ax.set_xticks(
            range(len(foods)), foods, rotation=60, ha="right", fontsize="small"
        )
        ax.set_yticks(range(len(people)), people, fontsize="small")
        ax.set_xlabel("completion (food)")
        ax.set_ylabel("person (prompt)")
        if annotate:
            for i in range(len(people)):
                for j in range(len(foods)):
                    v = values[i, j]
                    if abs(v) >= 0.005:  # blank cells read faster than a page of 0.00
                        strong = abs(v) > 0.6 * max(abs(vmin), abs(vmax))
                        color = (
                            ("w" if strong else "k")
                            if reference is not None
                            else ("k" if v > 0.6 * vmax else "w")
                        )
                        ax.text(
                            j,
                            i,
                            f"{v:+.2f}" if reference is not None else f"{v:.2f}",
                            ha="center",
                            va="center",
                            fontsize=7,
                            color=color,
                        )
        fig.colorbar(image, ax=ax, label=colorbar_label or bar_label)
        ax.set_title(
            title
            or (
                "difference in p(food | person)"
                if reference is not None
                else "p(food | person)"
            )
        )
        fig.tight_layout()
    return fig


def plot_drift_bars(
    drifts: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    metric: str = "tvd",
    threshold: float | None = None,
    log: bool = False,
    title: str | None = None,
) -> Figure:
    """Grouped bars, one group per person, one bar per run: how far each person's food
    distribution moved.

    `drifts` maps a run label to the output of `dpolib.drift(policy, reference,
    tokenizer, people)`; `metric` is "tvd" or "kl". `threshold` draws a dashed line
    (e.g. the tolerance a remedy must meet); `log` uses a logarithmic axis, so a run
    that barely moves stays visible next to one that moves a lot.
    """
    if metric not in ("tvd", "kl"):
        raise ValueError(f"metric must be 'tvd' or 'kl', got {metric!r}")
    if not isinstance(drifts, Mapping) or not drifts:
        raise ValueError(
            "drifts must be a non-empty dict run label -> dpolib.drift(...) output"
        )
    labels = list(drifts)
    people = list(next(iter(drifts.values())))
    for label, d in drifts.items():
        if list(d) != people:
            raise ValueError(
                f"run {label!r} covers {list(d)}, but the first run covers {people}; "
                f"compare the same people"
            )
        for p in people:
            if metric not in d[p]:
                raise ValueError(
                    f"run {label!r} has no {metric!r} for {p!r}; pass "
                    f"dpolib.drift(...) output"
                )
    width = 0.8 / len(labels)
    with course_style():
        fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(people) + 1.5) + 2.6, 3.0))
        for k, label in enumerate(labels):
            heights = [float(drifts[label][p][metric]) for p in people]
            positions = [i - 0.4 + width * (k + 0.5) for i in range(len(people))]
            ax.bar(positions, heights, width=width, label=label)
        if threshold is not None:
            ax.axhline(
                threshold,
                color="0.3",
                linestyle="--",
                linewidth=1,
                label=f"{threshold:g}",
            )
        ax.set_xticks(range(len(people)), people, rotation=30, ha="right")
        ax.set_xlabel("person (prompt)")
        ax.set_ylabel(
            "TVD to the reference"
            if metric == "tvd"
            else "KL(policy || reference) (nats)"
        )
        if log:
            ax.set_yscale("log")
        ax.set_title(title or "How far each person's food distribution moved")
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0)
        )  # outside: bars fill the whole axes
        fig.tight_layout()
    return fig


def plot_comparison_graph(
    k: int,
    chosen: Sequence[int] | Any,
    rejected: Sequence[int] | Any,
    *,
    title: str | None = None,
) -> Figure:
    """The comparison graph of a preference dataset over K responses: a node per
    response, an arrow winner -> loser per compared pair (width ~ count), red for the
    responses that won and never lost (their log-ratio has no finite optimum)."""
    chosen = [int(c) for c in chosen]
    rejected = [int(r) for r in rejected]
    if k < 2 or len(chosen) != len(rejected) or not chosen:
        raise ValueError(
            f"need k >= 2 and equally long, non-empty chosen and rejected, got k={k}, "
            f"{len(chosen)} chosen and {len(rejected)} rejected"
        )
    if min(chosen + rejected) < 0 or max(chosen + rejected) >= k:
        raise ValueError(f"response indices must lie in [0, {k - 1}]")
    wins: dict[tuple[int, int], int] = {}
    for w, lo in zip(chosen, rejected):
        wins[(w, lo)] = wins.get((w, lo), 0) + 1
    lost = set(rejected)
    never_lost = sorted(set(chosen) - lost)
    angle = [math.pi / 2 - 2 * math.pi * i / k for i in range(k)]
    xy = [(math.cos(a), math.sin(a)) for a in angle]
    most = max(wins.values())
    with course_style():
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        for (w, lo), n in sorted(wins.items()):
            back = wins.get((lo, w), 0)
            if back > n or (back == n and w > lo):
                continue  # drawn once, from the response that won more often
            ax.annotate(
                "",
                xy=xy[lo],
                xytext=xy[w],
                arrowprops=dict(
                    arrowstyle="-|>",
                    color="0.35",
                    linewidth=0.8 + 3.0 * (n + back) / most / 2,
                    shrinkA=13,
                    shrinkB=13,
                ),
            )
            mx, my = (xy[w][0] + xy[lo][0]) / 2, (xy[w][1] + xy[lo][1]) / 2
            ax.text(
                mx,
                my,
                f"{n}:{back}",
                fontsize=7,
                ha="center",
                va="center",
                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none"),
            )
        for i, (x, y) in enumerate(xy):
            color = (
                "C3"
                if i in never_lost
                else ("0.85" if i not in lost and i not in chosen else "C0")
            )
            ax.scatter([x], [y], s=420, color=color, zorder=3, edgecolor="0.2")
            ax.text(
                x,
                y,
                str(i),
                ha="center",
                va="center",
                fontsize=9,
                zorder=4,
                color="white" if color != "0.85" else "0.2",
            )
        ax.set_xlim(-1.35, 1.35)
        ax.set_ylim(-1.3, 1.3)
        ax.set_aspect("equal")
        ax.axis("off")  # a graph: position carries no quantity
        ax.set_title(
            title or "Comparison graph: arrow winner -> loser, label wins:losses",
            fontsize=9,
        )
    return fig


def plot_loss_plane(
    beta: float,
    *,
    limit: float = 10.0,
    trajectory: Sequence[tuple[float, float]] | None = None,
    title: str | None = None,
) -> Figure:
    """The DPO loss of one pair, -log sigma(beta (u_w - u_l)), on the (u_w, u_l) plane:
    constant along every diagonal u_w - u_l = const; `trajectory` is a run's path."""
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta must be a number > 0, got {beta!r}")
    grid = np.linspace(-limit, limit, 201)
    u_w, u_l = np.meshgrid(grid, grid)
    loss = np.logaddexp(0.0, -beta * (u_w - u_l))  # -log sigma(z) = log(1 + e^-z)
    with course_style():
        fig, ax = plt.subplots(figsize=(4.8, 4.0))
        mesh = ax.contourf(u_w, u_l, loss, levels=20, cmap="viridis")
        lines = ax.contour(
            u_w, u_l, loss, levels=[0.1, math.log(2), 2.0], colors="w", linewidths=0.8
        )
        ax.clabel(lines, fmt={0.1: "0.1", math.log(2): "log 2", 2.0: "2"}, fontsize=7)
        fig.colorbar(mesh, ax=ax, label="loss -log sigma(beta d) (nats)")
        if trajectory is not None:
            path = np.asarray(trajectory, dtype=float)
            if path.ndim != 2 or path.shape[1] != 2:
                raise ValueError(
                    "trajectory must be a sequence of (u_w, u_l) points, got shape "
                    f"{path.shape}"
                )
            ax.plot(path[:, 0], path[:, 1], color="C3", linewidth=1.8, label="run")
            ax.plot(*path[0], "o", color="C3", markersize=4)
            ax.plot(*path[-1], "s", color="C3", markersize=4)
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel("u(y_w) = log-ratio of the chosen completion (nats)")
        ax.set_ylabel("u(y_l) = log-ratio of the rejected (nats)")
        ax.set_title(title or f"The DPO loss over (u_w, u_l), beta = {beta:g}")
        fig.tight_layout()
    return fig


_MASK_ROLES = {
    "prompt": "0.82",
    "completion": "#9ecae1",
    "<eos>": "#fdae6b",
    "padding": "white",
}


def plot_token_mask(tokenizer: Any, batch: Any, *, title: str | None = None) -> Figure:
    """A batch as the loss sees it: one row per sequence, one cell per target token,
    coloured prompt / completion / <eos> / padding; only completion and <eos> cells
    (the completion mask) enter log pi(y | x)."""
    targets = batch.targets.detach().cpu()
    mask = batch.completion_mask.detach().cpu()
    if targets.shape != mask.shape or targets.dim() != 2:
        raise ValueError(
            "batch must have 2-D targets and completion_mask of the same shape, got "
            f"{tuple(targets.shape)} and {tuple(mask.shape)}"
        )
    rows, cols = targets.shape
    with course_style():
        fig, ax = plt.subplots(figsize=(0.34 * cols + 1.4, 0.42 * rows + 1.1))
        for r in range(rows):
            # padding = after the row's last completion token
            last = int(mask[r].nonzero().max()) if mask[r].any() else -1
            for t in range(cols):
                token = int(targets[r, t])
                if t > last:
                    role, text = "padding", ""
                elif token == tokenizer.eos_id:
                    role, text = "<eos>", "E"
                elif bool(mask[r, t]):
                    role, text = "completion", tokenizer.decode([token])
                else:
                    role, text = "prompt", tokenizer.decode([token])
                ax.add_patch(
                    plt.Rectangle(
                        (t, rows - 1 - r),
                        0.95,
                        0.9,
                        facecolor=_MASK_ROLES[role],
                        edgecolor="0.6",
                        linewidth=0.5,
                    )
                )
                shown = "_" if text == " " else text
                ax.text(
                    t + 0.47,
                    rows - 0.55 - r,
                    shown,
                    ha="center",
                    va="center",
                    fontsize=7,
                    family="monospace",
                )
        handles = [
            plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="0.6")
            for c in _MASK_ROLES.values()
        ]
        labels = [
            "prompt (mask 0)",
            "completion (mask 1)",
            "<eos> (mask 1, 'E')",
            "padding (mask 0)",
        ]
        ax.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.3),
            ncol=4,
            fontsize=7,
            frameon=False,
        )
        ax.grid(False)  # the cells are the grid
        ax.set_xlim(0, cols)
        ax.set_ylim(0, rows)
        ax.set_xticks(
            [c + 0.47 for c in range(0, cols, 2)], [str(c) for c in range(0, cols, 2)]
        )
        ax.set_yticks(
            [rows - 0.55 - r for r in range(rows)], [f"row {r}" for r in range(rows)]
        )
        ax.set_xlabel("position t (the target that logits[:, t] predicts; _ = space)")
        ax.set_title(title or "Which target tokens count in log pi(y | x)")
        fig.tight_layout()
    return fig


def plot_letter_heatmap(
    rows: Mapping[str, Sequence[float]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    floor: float = 1e-8,
) -> Figure:
    """Heat map of p(next letter | prompt, letters before it), one row per model.

    Colour is log10 of the probability (clipped at `floor`), so a letter pushed to 1e-6
    stands out next to one at 0.8; every cell is annotated with its value.
    """
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError(
            "rows must be a non-empty dict model label -> list of probabilities, "
            f"got {describe(rows)}"
        )
    columns = list(columns)
    names = list(rows)
    values = np.array([[float(v) for v in rows[n]] for n in names], dtype=float)
    if values.ndim != 2 or values.shape[1] != len(columns):
        raise ValueError(
            f"every row needs one value per column ({len(columns)}: {columns}); "
            f"got row lengths {[len(rows[n]) for n in names]}"
        )
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1 + 1e-9).any():
        raise ValueError(
            "the values must be probabilities in [0, 1]; got "
            f"{describe(values.tolist())}"
        )
    if not 0 < floor < 1:
        raise ValueError(f"floor must be in (0, 1), got {describe(floor)}")
    logs = np.log10(np.clip(values, floor, 1.0))
    with course_style():
        fig, ax = plt.subplots(
            figsize=(0.9 * len(columns) + 2.6, 0.42 * len(names) + 1.5)
        )
        image = ax.imshow(
            logs, cmap="viridis", vmin=math.log10(floor), vmax=0.0, aspect="auto"
        )
        ax.grid(False)  # grid lines would cut through the cells
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("next letter | letters before it")
        ax.set_ylabel("model")
        for i in range(len(names)):
            for j in range(len(columns)):
                v = values[i, j]
                text = f"{v:.3f}" if v >= 0.01 else f"{v:.0e}"
                dark = logs[i, j] < 0.6 * math.log10(
                    floor
                )  # viridis is dark at low end
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w" if dark else "k",
                )
        fig.colorbar(image, ax=ax, label="log10 probability")
        ax.set_title(title or "Next-letter probabilities")
        fig.tight_layout()
    return fig


def plot_sweep_table(
    table: Mapping[str, Mapping[tuple[Any, Any], float]],
    rows: Sequence[Any],
    cols: Sequence[Any],
    *,
    formats: Mapping[str, str] | None = None,
    row_label: str = "beta",
    col_label: str = "learning rate",
    title: str | None = None,
) -> Figure:
    """A sweep's results as a table of heat maps: one panel per metric, rows x cols.

    `table` maps a metric's name to {(row value, col value): number}, e.g.
    {"pizza": {(beta, lr): p}}. Each panel has its own colour scale and every cell is
    annotated with `formats[metric]` (default "{:.3g}"), so the figure reads as a table.
    """
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            "table must be a non-empty dict metric -> {(row, col): value}, "
            f"got {describe(table)}"
        )
    rows, cols = list(rows), list(cols)
    if not rows or not cols:
        raise ValueError("rows and cols must be non-empty")
    formats = dict(formats or {})
    grids = {}
    for name, cells in table.items():
        missing = [(r, c) for r in rows for c in cols if (r, c) not in cells]
        if missing:
            raise ValueError(
                f"metric {name!r} has no value for {describe(missing)}; "
                "give one for every (row, col)"
            )
        grids[name] = np.array([[float(cells[r, c]) for c in cols] for r in rows])
    with course_style():
        fig, axes = plt.subplots(
            1,
            len(grids),
            figsize=(0.75 * len(cols) * len(grids) + 1.2, 0.3 * len(rows) + 1.3),
            squeeze=False,
        )
        for ax, (name, grid) in zip(axes[0], grids.items()):
            finite = grid[np.isfinite(grid)]
            lo = float(finite.min()) if finite.size else 0.0
            hi = float(finite.max()) if finite.size else 1.0
            ax.imshow(
                grid,
                cmap="viridis",
                vmin=lo,
                vmax=hi if hi > lo else lo + 1,
                aspect="auto",  # panels as wide as the figure allows, cells readable
            )
            ax.grid(False)
            ax.set_xticks(
                range(len(cols)),
                [f"{c:g}" for c in cols],
                fontsize="small",
                rotation=45,
                ha="right",
            )
            ax.set_yticks(range(len(rows)), [f"{r:g}" for r in rows], fontsize="small")
            ax.set_xlabel(col_label)
            ax.set_title(name, fontsize="medium")
            fmt = formats.get(name, "{:.3g}")
            for i in range(len(rows)):
                for j in range(len(cols)):
                    v = grid[i, j]
                    bright = hi > lo and (v - lo) / (hi - lo) > 0.6
                    ax.text(
                        j,
                        i,
                        fmt.format(v),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="k" if bright else "w",
                    )
        axes[0][0].set_ylabel(row_label)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig

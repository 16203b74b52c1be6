"""dpolib.course.viz: kernel-free sliders are offline and complete, show_source shows
the real code."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")  # tests never open windows

import matplotlib.pyplot as plt
import numpy as np
import pytest

from dpolib.course import viz


def _figure():
    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    x = np.linspace(-2, 2, 20)
    (line,) = ax.plot(x, x)
    calls = []

    def draw(beta):
        calls.append(beta)
        line.set_ydata(np.tanh(beta * x))
        ax.set_title(f"beta = {beta:g}")

    return fig, draw, calls


def test_slider_has_one_frame_per_value_and_no_remote_requests():
    fig, draw, calls = _figure()
    out = viz.kernel_free_slider(fig, draw, [0.1, 1.0, 10.0])
    markup = out.data
    assert calls == [
        0.1,
        0.1,
        1.0,
        10.0,
    ]  # the layout pass on the first value, then one draw per frame
    assert len(re.findall(r'frames\[\d+\] = "data:image/png;base64,', markup)) == 3
    # nothing that a browser would fetch from another host
    assert (
        "http://" not in markup
        and "https://" not in markup
        and "//" + "cdn" not in markup
    )
    assert "font-awesome" not in markup and 'class="fa ' not in markup
    assert 'type="range"' in markup
    assert re.search(r'<img id="_anim_img[0-9a-f]+" alt="[^"]+">', markup)


def test_slider_lays_out_the_figure_once_unless_told_not_to():
    fig, draw, _ = _figure()
    fig.axes[0].set_xlabel("a label that needs room")
    before = fig.subplotpars.bottom
    viz.kernel_free_slider(fig, draw, [1.0, 2.0])
    assert fig.subplotpars.bottom != before
    fig, draw, _ = _figure()
    before = fig.subplotpars.bottom
    viz.kernel_free_slider(fig, draw, [1.0, 2.0], tight_layout=False)
    assert fig.subplotpars.bottom == before


def test_slider_closes_the_figure():
    fig, draw, _ = _figure()
    viz.kernel_free_slider(fig, draw, [1.0, 2.0])
    assert not plt.fignum_exists(fig.number)


def test_slider_readout_uses_label_and_fmt():
    fig, draw, _ = _figure()
    markup = viz.kernel_free_slider(
        fig, draw, [0.25, 0.5], label="lr", fmt="{:.2f}"
    ).data
    assert '["lr = 0.25", "lr = 0.50"]' in markup
    assert ">lr = 0.25</output>" in markup


def test_slider_frame_size_matches_the_docstring_estimate():
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    x = np.linspace(-3, 3, 200)
    (line,) = ax.plot(x, x)
    values = [0.5, 1.0, 2.0, 4.0]
    markup = viz.kernel_free_slider(
        fig, lambda b: line.set_ydata(np.tanh(b * x)), values
    ).data
    per_frame_kib = len(markup) / len(values) / 1024
    assert 5 < per_frame_kib < 40, per_frame_kib


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"values": []}, ValueError),
        ({"values": range(viz.MAX_FRAMES + 1)}, ValueError),
        ({"values": [1.0, float("nan")]}, ValueError),
        ({"values": "abc"}, TypeError),
        ({"values": [1.0], "interval_ms": 0}, ValueError),
        ({"values": [1.0], "fmt": "{:d}"}, ValueError),
    ],
)
def test_slider_rejects_bad_input(kwargs, error):
    fig, draw, calls = _figure()
    with pytest.raises(error):
        viz.kernel_free_slider(fig, draw, **kwargs)
    assert calls == []  # validated before any rendering
    plt.close(fig)


def test_slider_rejects_non_figure_and_non_callable():
    fig, draw, _ = _figure()
    with pytest.raises(TypeError, match="Figure"):
        viz.kernel_free_slider(fig.axes[0], draw, [1.0])
    with pytest.raises(TypeError, match="draw"):
        viz.kernel_free_slider(fig, 3, [1.0])
    plt.close(fig)


def test_source_markdown_is_the_real_source():
    import inspect

    import dpolib.runtime

    md = viz.source_markdown(dpolib.runtime.seed_everything)
    assert md.startswith("`dpolib.runtime.seed_everything` (dpolib/runtime.py):\n\n")
    assert (
        "```python\n"
        + inspect.getsource(dpolib.runtime.seed_everything).rstrip("\n")
        + "\n```"
        in md
    )


def test_source_markdown_dedents_methods_and_widens_fences():
    class Holder:
        def method(self):
            """Has ``` inside."""
            return "```"

    md = viz.source_markdown(Holder.method)
    assert "````python\ndef method(self):" in md


def test_source_markdown_rejects_objects_without_source():
    with pytest.raises(TypeError, match="no source"):
        viz.source_markdown(len)


def test_show_source_displays_markdown(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    viz.show_source(viz.course_style)
    assert len(shown) == 1 and "def course_style" in shown[0].data


def test_course_style_leaves_global_rcparams_alone():
    before = dict(matplotlib.rcParams)
    with viz.course_style():
        assert matplotlib.rcParams["axes.spines.top"] is False
    assert dict(matplotlib.rcParams) == before

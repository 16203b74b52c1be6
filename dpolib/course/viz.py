"""Plot helpers for the book: kernel-free sliders, library source display, one shared
figure style.

Nothing here changes matplotlib's global state at import time; the style is applied only
inside `course_style()`.
"""

from __future__ import annotations

import contextlib
import html
import inspect
import json
import math
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure

if TYPE_CHECKING:  # matplotlib.typing is not in every matplotlib >= 3.7
    from matplotlib.typing import RcKeyType

__all__ = [
    "COURSE_STYLE",
    "course_style",
    "kernel_free_slider",
    "show_source",
    "source_markdown",
]

# A frame is one embedded PNG: about 17 KiB at 5x3 in and 100 dpi. Past this many frames
# a page (and the .ipynb that stores it) grows by megabytes, so we refuse rather than
# bloat silently.
MAX_FRAMES = 60

# The rc settings every course figure shares; used only inside `course_style()`.
COURSE_STYLE: dict[RcKeyType, Any] = {
    "figure.figsize": (5.0, 3.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "axes.labelsize": "medium",
    "legend.fontsize": "small",
    "legend.frameon": False,
}


@contextlib.contextmanager
def course_style() -> Iterator[None]:
    """Apply the course's figure style (small, gridded, no top/right spines) inside a
    `with` block."""
    with plt.rc_context(COURSE_STYLE):
        yield


# matplotlib's jshtml template links font-awesome from a CDN for its button icons. The
# book must request nothing from another host, so the <link> goes and the icons become
# plain characters (the buttons keep their title and aria-label).
_FONT_AWESOME_LINK = re.compile(r"<link[^>]*font-awesome[^>]*>\s*", re.IGNORECASE)
_ICON = re.compile(r'<i class="fa ([a-z\- ]+)"></i>')
_ICON_TEXT = {
    "fa-minus": "&minus;",
    "fa-fast-backward": "|&#9665;",
    "fa-step-backward": "&#9665;",
    "fa-play fa-flip-horizontal": "&#9664;",
    "fa-pause": "&#10074;&#10074;",
    "fa-play": "&#9654;",
    "fa-step-forward": "&#9655;",
    "fa-fast-forward": "&#9655;|",
    "fa-plus": "+",
}
_ANIM_ID = re.compile(r'<img id="_anim_img([0-9a-f]+)">')


def _offline_jshtml(markup: str, *, alt: str, label_text: list[str]) -> str:
    """Make matplotlib's jshtml self-contained and add alt text and a live value
    readout."""
    markup = _FONT_AWESOME_LINK.sub("", markup)
    markup = _ICON.sub(
        lambda m: _ICON_TEXT.get(m.group(1), html.escape(m.group(1))), markup
    )
    found = _ANIM_ID.search(markup)
    if (
        found is None
    ):  # the template changed: better to fail loudly than ship a half-working slider
        raise RuntimeError(
            "unexpected jshtml from matplotlib: no animation <img> found"
        )
    anim_id = found.group(1)
    markup = markup.replace(
        found.group(0),
        f'<img id="_anim_img{anim_id}" alt="{html.escape(alt, quote=True)}">',
        1,
    )
    # The readout follows the slider: wrap the Animation's set_frame once the object
    # exists (matplotlib creates it in a setTimeout, so poll briefly instead of assuming
    # an order).
    readout = (
        f'<div class="dpolib-slider-value" style="font-family: monospace">'
        f'<output id="_dpolib_readout{anim_id}">'
        f"{html.escape(label_text[0])}</output></div>\n"
        "<script>\n(function() {\n"
        f"  var labels = {json.dumps(label_text)};\n"
        f'  var name = "anim{anim_id}", out_id = "_dpolib_readout{anim_id}",'
        "  tries = 0;\n"
        "  function hook() {\n"
        "    var anim = window[name];\n"
        "    if (!anim) { if (tries++ < 200) { setTimeout(hook, 10); } return; }\n"
        "    var set_frame = anim.set_frame;\n"
        "    anim.set_frame = function(frame) {\n"
        "      set_frame.call(anim, frame);\n"
        "      var out = document.getElementById(out_id);\n"
        "      if (out) { out.textContent = labels[anim.current_frame]; }\n"
        "    };\n"
        "    anim.set_frame(anim.current_frame);\n"
        "  }\n"
        "  setTimeout(hook, 0);\n"
        "})();\n</script>\n"
    )
    style = "display: inline-block; text-align: center"
    return f'<div class="dpolib-slider" style="{style}">\n{markup}\n{readout}</div>'


def kernel_free_slider(
    fig: Figure,
    draw: Callable[[Any], object],
    values: Iterable[Any],
    *,
    label: str = "beta",
    fmt: str = "{:g}",
    interval_ms: int = 500,
    alt: str | None = None,
    tight_layout: bool = True,
):
    """A slider over `values` that works on the static website: one pre-rendered frame
    per value.

    `draw(value)` must update `fig`'s artists for that value (set_data, set_text, ...;
    put the value in the title so every frame says what it shows). Every frame is stored
    as a PNG in the page and in the notebook: about 17 KiB per frame at 5x3 in and 100
    dpi, so keep it to a few dozen frames (at most `MAX_FRAMES`) and a modest dpi. Below
    the slider a readout shows `f"{label} = {fmt.format(value)}"` for the current frame.
    `alt` is the frames' alt text (default: what the slider varies). Unless the figure
    has a layout engine or `tight_layout=False`, it is laid out once
    (`fig.tight_layout()`) after drawing the first value.

    The figure is closed (no second static copy appears) and nothing is requested from
    another host (matplotlib's font-awesome CDN link is removed). Returns an
    `IPython.display.HTML`; make it the last expression of the cell.
    """
    from IPython.display import HTML  # IPython comes with every notebook kernel

    if not isinstance(fig, Figure):
        raise TypeError(
            f"fig must be a matplotlib Figure, got {type(fig).__name__}; pass the "
            f"`fig` from plt.subplots()"
        )
    if not callable(draw):
        raise TypeError(
            f"draw must be a function draw(value) that redraws the figure, got "
            f"{type(draw).__name__}"
        )
    if isinstance(values, (str, bytes)):
        raise TypeError("values must be a sequence of slider positions, not a string")
    frames = list(values)
    if not frames:
        raise ValueError(
            "values is empty: give at least one slider position, e.g. [0.1, 1.0, 10.0]"
        )
    if len(frames) > MAX_FRAMES:
        raise ValueError(
            f"{len(frames)} frames is too many (at most {MAX_FRAMES}, ~17 KiB each): "
            f"use fewer values"
        )
    for v in frames:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"values must be finite, got {v!r}")
    if (
        isinstance(interval_ms, bool)
        or not isinstance(interval_ms, (int, float))
        or interval_ms <= 0
    ):
        raise ValueError(
            f"interval_ms must be a positive number of milliseconds, got "
            f"{interval_ms!r}"
        )
    try:
        label_text = [f"{label} = {fmt.format(v)}" for v in frames]
    except (ValueError, TypeError, IndexError, KeyError) as err:
        raise ValueError(
            f"fmt {fmt!r} cannot format the values ({err}); use e.g. fmt='{{:g}}'"
        ) from None
    if alt is None:
        first, last = (t.split(" = ", 1)[1] for t in (label_text[0], label_text[-1]))
        alt = f"Figure with a slider over {label} from {first} to {last}"

    def update(value: Any) -> list:
        draw(value)
        return []  # blit is off: the whole figure is redrawn per frame

    def init() -> list:
        # Frames are saved at the figure's size (no bbox_inches="tight" as in inline
        # plots), so labels can fall off the edge: lay the figure out once, on the first
        # value, and keep that layout for every frame (re-laying out per frame would
        # make the axes jump).
        draw(frames[0])
        if tight_layout and fig.get_layout_engine() is None:
            fig.tight_layout()
        return []

    try:
        anim = FuncAnimation(
            fig,
            update,
            frames=frames,
            init_func=init,
            interval=interval_ms,
            repeat=False,
            blit=False,
            cache_frame_data=False,
        )
        markup = anim.to_jshtml(default_mode="once")
    finally:
        plt.close(fig)
    return HTML(_offline_jshtml(markup, alt=alt, label_text=label_text))


def _qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or getattr(
        inspect.getmodule(obj), "__name__", ""
    )
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or ""
    if inspect.ismodule(obj):
        return obj.__name__
    return f"{module}.{name}" if module else name


def source_markdown(obj: Any) -> str:
    """The real source of `obj` (function, class, method or module) as a Markdown code
    block."""
    target = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(target, property):
        target = target.fget
    try:
        source = inspect.getsource(target)
    except (TypeError, OSError) as err:
        raise TypeError(
            f"no source available for {obj!r} ({err}); pass a function, class, method "
            f"or module "
            "defined in a .py file, e.g. show_source(dpolib.dpo_loss)"
        ) from None
    source = textwrap.dedent(source).rstrip("\n")  # methods come indented
    try:
        file = inspect.getsourcefile(target) or "?"
    except TypeError:
        file = "?"
    # The file, not the line number: a line added above the function would change every
    # stored output that shows it (and fail nbval) although the code shown is the same.
    file = re.sub(r"^.*?/(dpolib/)", r"\1", file.replace("\\", "/"))
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"`{_qualified_name(obj)}` ({file}):\n\n{fence}python\n{source}\n{fence}\n"


def show_source(obj: Any) -> None:
    """Display the real source of a dpolib function or class, syntax-highlighted, in the
    notebook.

    Chapters show library code this way instead of keeping a second copy that could
    drift.
    """
    from IPython.display import Markdown, display

    display(Markdown(source_markdown(obj)))

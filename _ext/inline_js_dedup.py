"""Stop Sphinx 7.4 from writing inline scripts twice (console: THEBE_JS_URL already
declared).

sphinx-thebe registers an inline script with `app.add_js_file(None, body=...)`. Sphinx
7.4 stores it in the builder once as `_JavaScript(None, ...)` and, when it re-reads the
registry before writing pages, again as `_JavaScript("", ...)`; the two compare unequal,
so every page declares `const THEBE_JS_URL` twice and the second raises a SyntaxError.
Upstream fixed this in sphinx-doc/sphinx#13402 (Sphinx 8.2), which jupyter-book 1 cannot
use. Normalising `None` to `""` makes the duplicate check see one script.
"""

from __future__ import annotations

import functools
from typing import Any

from sphinx.application import Sphinx
from sphinx.builders.html import StandaloneHTMLBuilder

_original_add_js_file = StandaloneHTMLBuilder.add_js_file


@functools.wraps(_original_add_js_file)
def _add_js_file(
    self: StandaloneHTMLBuilder, filename: str | None, **kwargs: Any
) -> None:
    _original_add_js_file(self, filename or "", **kwargs)


def setup(app: Sphinx) -> dict:
    if (
        getattr(StandaloneHTMLBuilder.add_js_file, "__wrapped__", None)
        is not _original_add_js_file
    ):
        StandaloneHTMLBuilder.add_js_file = _add_js_file  # type: ignore[method-assign]
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

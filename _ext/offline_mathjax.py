"""Serve the book's own MathJax (vendored by tools/vendor_mathjax.py), never a CDN.

The folder `_mathjax/` (holding `mathjax/tex-mml-chtml.js` and what it loads) is added
to `html_static_path` on `config-inited`, i.e. after jupyter-book scanned the static
paths for .js/.css files to inject into every page: MathJax's ~70 scripts are copied but
only the one entry point is loaded, by Sphinx's mathjax extension via `mathjax_path`.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError

ENTRY = "mathjax/tex-mml-chtml.js"  # relative to _static/ in the built site


def _add_vendored_mathjax(app: Sphinx, config: Config) -> None:
    folder = Path(app.confdir) / "_mathjax"
    entry = folder / ENTRY
    if not entry.is_file():
        raise ConfigError(
            f"{entry} is missing: the book serves its own MathJax. Run `npm ci && "
            "python tools/vendor_mathjax.py` (`make book` does both)."
        )
    config.html_static_path = [*config.html_static_path, str(folder)]
    # A path without a scheme is resolved against _static/ and gets a ?v=checksum
    # suffix.
    config.mathjax_path = ENTRY


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _add_vendored_mathjax, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

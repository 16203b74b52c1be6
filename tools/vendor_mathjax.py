"""Copy the MathJax that npm installed (pinned in package-lock.json) into
_mathjax/mathjax/.

The book serves this copy itself (see _ext/offline_mathjax.py), so math is typeset with
no CDN and no network. Only the parts a page loads are copied (about 9 MB instead of 24
MB): the combined TeX+MathML+CHTML component, the TeX extensions it autoloads, CHTML
fonts, the menu and the accessibility modules the menu can switch on. A VERSION file
records what was vendored.

Usage: python tools/vendor_mathjax.py   (run by `make book` after `npm ci`)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "node_modules" / "mathjax" / "es5"
TARGET = ROOT / "_mathjax" / "mathjax"
WANTED_MAJOR = (
    "3."  # MathJax 4 changed file layout and configuration: not a drop-in update
)
PARTS = [
    "tex-mml-chtml.js",
    "input/tex/extensions",
    "input/mml/extensions",
    "input/mml/entities.js",
    "output/chtml/fonts/woff-v2",
    "output/chtml/fonts/tex.js",
    "ui",
    "a11y",
    "sre",
    "adaptors",
]


def locked_version() -> str:
    """The MathJax version package-lock.json pins."""
    lock = json.loads((ROOT / "package-lock.json").read_text())
    return lock["packages"]["node_modules/mathjax"]["version"]


def main() -> int:
    want = locked_version()
    if not want.startswith(WANTED_MAJOR):
        print(
            f"package-lock.json pins mathjax {want}; this book needs 3.x",
            file=sys.stderr,
        )
        return 1
    package = SOURCE.parent / "package.json"
    if not package.is_file():
        print("node_modules/mathjax is missing: run `npm ci` first", file=sys.stderr)
        return 1
    have = json.loads(package.read_text())["version"]
    if have != want:
        print(
            f"node_modules has mathjax {have}, package-lock.json pins {want}: run `npm "
            "ci`",
            file=sys.stderr,
        )
        return 1
    if TARGET.exists():
        shutil.rmtree(TARGET)
    for part in PARTS:
        src = SOURCE / part
        dst = TARGET / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    shutil.copy2(SOURCE.parent / "LICENSE", TARGET / "LICENSE")
    (TARGET / "VERSION").write_text(
        f"mathjax {have} (npm, es5 build; parts: {', '.join(PARTS)})\n"
    )
    size = sum(f.stat().st_size for f in TARGET.rglob("*") if f.is_file())
    print(
        f"vendored mathjax {have} into {TARGET.relative_to(ROOT)} ({size / 2**20:.1f} "
        "MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

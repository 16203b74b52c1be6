"""Write the student edition of the course: the chapters with their solutions removed.

    python tools/student_edition.py                  # chapters/ -> student/ (what `make student` runs)
    python tools/student_edition.py SRC OUT          # any folder of chapters
    python tools/student_edition.py --list-exercises # every exercise: chapter, label, tier, title

For every chapter notebook:
- code between `### BEGIN SOLUTION` and `### END SOLUTION` (nbgrader's markers) becomes a stub that raises
  NotImplementedError, indented like the markers; the code around the markers stays;
- gated solutions (the `{solution-start}` markdown cell, everything up to and including the `{solution-end}`
  cell) are removed, except code cells inside them that hold solution markers (stubbed: the student's
  workspace) or call a checker such as `check_dpo_loss(...)` (the student's feedback);
- `{solution}` directive blocks inside markdown cells are removed, and so are cells tagged `solution`;
- outputs, execution counts and widget state are cleared.
Other chapter files are copied (Markdown files with their `{solution}` blocks removed), except
`instructors.md`, which holds the answer key. The result is checked for leaks before it is written.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = (
    "# YOUR CODE HERE",
    "raise NotImplementedError()",
)  # nbgrader's own stub, so autograding sees the same
TEXT_STUB = "*Your answer here.*"
NOT_COPIED = {"instructors.md"}  # the answer key stays with the instructors
SKIPPED_DIRS = {".ipynb_checkpoints", "__pycache__", "_build", ".jupyter_cache"}
MARKER_FILE = ".student-edition"  # lets a rerun clear OUT safely: only a folder this tool wrote is ever deleted
SOLUTION_TAG = "solution"

# A MyST directive opening: ```{name} argument  or  :::{name} argument (fence of 3 or more).
DIRECTIVE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>`{3,}|:{3,})\s*\{(?P<name>[A-Za-z0-9_:-]+)\}\s*(?P<arg>.*)$"
)
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
CHECKER_CALL = re.compile(r"\bcheck_[a-z0-9_]+\s*\(|\bdpolib\.exercises\b")
TIERS = ("warm-up", "core", "challenge")


class StudentEditionError(ValueError):
    """A chapter cannot be turned into a student edition safely (unbalanced markers, unclosed solution...)."""


@dataclass
class Exercise:
    chapter: str
    label: str
    tier: str
    title: str


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


def _block_end(lines: list[str], start: int, fence: str) -> int:
    """Index just past the fence block opened at lines[start] (the end of the text if it is never closed)."""
    for j in range(start + 1, len(lines)):
        if _closes(lines[j], fence):
            return j + 1
    return len(lines)


def _replace_markers(
    source: str, stub: tuple[str, ...], where: str
) -> tuple[str, bool]:
    """Replace each BEGIN/END SOLUTION region by `stub`, indented like its BEGIN line."""
    out: list[str] = []
    inside, found = False, False
    for n, line in enumerate(source.split("\n"), 1):
        s = line.strip()
        if s == BEGIN:
            if inside:
                raise StudentEditionError(
                    f"{where}: line {n}: {BEGIN!r} inside another solution region; close the first with {END!r}"
                )
            inside, found = True, True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + stub_line for stub_line in stub]
        elif s == END:
            if not inside:
                raise StudentEditionError(
                    f"{where}: line {n}: {END!r} without a {BEGIN!r} before it"
                )
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise StudentEditionError(
            f"{where}: {BEGIN!r} is never closed; add {END!r} after the solution code"
        )
    return "\n".join(out), found


def strip_markdown(
    text: str, in_gated: bool = False, where: str = "markdown"
) -> tuple[str, bool]:
    """Remove `{solution}` blocks and gated solution text from Markdown; returns (text, still inside a gated solution)."""
    lines = text.split("\n")
    out: list[str] = []
    open_directives: list[
        str
    ] = []  # fences of the other directives we are inside ({exercise}, {note}, ...)
    i = 0
    while i < len(lines):
        line = lines[i]
        if open_directives and not in_gated and _closes(line, open_directives[-1]):
            open_directives.pop()
            out.append(line)
            i += 1
            continue
        d = DIRECTIVE.match(line)
        name = d.group("name") if d else None
        if name == "solution-start":
            if in_gated:
                raise StudentEditionError(
                    f"{where}: a {{solution-start}} inside another gated solution; close the first with {{solution-end}}"
                )
            in_gated = True
            i = _block_end(lines, i, d.group("fence"))
            continue
        if name == "solution-end":
            if not in_gated:
                raise StudentEditionError(
                    f"{where}: {{solution-end}} without a {{solution-start}} before it"
                )
            in_gated = False
            i = _block_end(lines, i, d.group("fence"))
            continue
        if in_gated:
            i += 1
            continue
        if name == "solution":
            i = _block_end(lines, i, d.group("fence"))
            continue
        if (
            d is not None
        ):  # another directive: keep it, and look inside it for solutions too
            open_directives.append(d.group("fence"))
            out.append(line)
            i += 1
            continue
        f = FENCE.match(line)
        if f:  # an ordinary code block: copy it whole, so examples inside it are not parsed
            end = _block_end(lines, i, f.group("fence"))
            out += lines[i:end]
            i = end
            continue
        out.append(line)
        i += 1
    if len(out) == len(lines) and not any(line.strip() == BEGIN for line in out):
        return text, in_gated  # nothing to remove: leave the text exactly as it was
    text = "\n".join(out)
    if BEGIN in text:  # nbgrader's markers also work in Markdown answers
        text, _ = _replace_markers(text, (TEXT_STUB,), where)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n"), in_gated


def _check_syntax(source: str, where: str) -> None:
    # Magics and shell escapes are not Python: stand a `pass` in for them, at the same indentation.
    lines = []
    for line in source.split("\n"):
        s = line.lstrip()
        lines.append(
            line[: len(line) - len(s)] + "pass" if s.startswith(("%", "!")) else line
        )
    try:
        compile("\n".join(lines), where, "exec")
    except SyntaxError as e:
        raise StudentEditionError(
            f"{where}: the cell is not valid Python once its solution is replaced by the stub ({e.msg}, line {e.lineno}); "
            "put the markers around whole statements"
        ) from None


def student_notebook(
    nb: nbformat.NotebookNode, name: str = "notebook", keep_solution_code: bool = False
) -> nbformat.NotebookNode:
    """A copy of `nb` without solutions and outputs (see the module docstring for the rules)."""
    cells = []
    in_gated = False
    for k, cell in enumerate(nb.cells):
        where = f"{name}, cell {k}"
        cell = nbformat.from_dict(
            cell
        )  # a deep copy: the source notebook is left alone
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            continue
        if cell.cell_type == "markdown":
            text, in_gated = strip_markdown(cell.source, in_gated, where)
            if not text.strip():
                continue
            cell.source = text
        elif cell.cell_type == "code":
            has_markers = any(
                line.strip() in (BEGIN, END) for line in cell.source.split("\n")
            )
            if in_gated and not (has_markers or CHECKER_CALL.search(cell.source)):
                continue
            if has_markers and not keep_solution_code:
                cell.source, _ = _replace_markers(cell.source, CODE_STUB, where)
                _check_syntax(cell.source, where)
            cell.outputs = []
            cell.execution_count = None
            for key in ("execution", "collapsed", "scrolled"):
                cell.metadata.pop(key, None)
        elif in_gated:  # a raw cell inside a gated solution
            continue
        cells.append(cell)
    if in_gated:
        raise StudentEditionError(
            f"{name}: a {{solution-start}} is never closed by a {{solution-end}} cell"
        )
    out = nbformat.from_dict(nb)
    out.cells = cells
    out.metadata.pop("widgets", None)
    if cells and cells[0].cell_type == "markdown":
        note = nbformat.v4.new_markdown_cell(
            "*Student edition: solutions removed.* An exercise's code cell raises `NotImplementedError` until you "
            "write your code where it says `# YOUR CODE HERE`; the check cell after it then tells you what is right "
            "or wrong. Run the cells in order."
        )
        if "id" in cells[0]:
            note["id"] = "student-edition-note"
        else:
            note.pop("id", None)
        out.cells.insert(1, note)
    return out


def find_leaks(text: str, allow_markers: bool = False) -> list[str]:
    """Lines of `text` (a notebook's JSON or a Markdown file) that still carry solution material."""
    leaks = []
    for n, line in enumerate(text.split("\n"), 1):
        if "{solution" in line:
            leaks.append(f"line {n}: solution directive: {line.strip()[:80]}")
        if not allow_markers and ("BEGIN SOLUTION" in line or "END SOLUTION" in line):
            leaks.append(f"line {n}: nbgrader marker: {line.strip()[:80]}")
    return leaks


def _prepare_out(out: Path, src: Path) -> None:
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise StudentEditionError(
            f"the output folder {out} must lie outside the chapters folder {src}"
        )
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER_FILE).exists():
            raise StudentEditionError(
                f"{out} exists, is not empty and was not written by this tool; choose another folder or empty it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).write_text(
        "Written by tools/student_edition.py; `make student` deletes and rewrites this folder.\n"
    )


def build(src: Path, out: Path, keep_solution_code: bool = False) -> list[Path]:
    """Write the student edition of every chapter in `src` to `out`; returns the files written."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise StudentEditionError(f"no chapters folder at {src}")
    # Transform everything first: a chapter that fails leaves the previous edition in place.
    results: dict[Path, str | Path] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if (
            path.is_dir()
            or any(part in SKIPPED_DIRS for part in rel.parts)
            or rel.name in NOT_COPIED
        ):
            continue
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            text = (
                nbformat.writes(student_notebook(nb, str(rel), keep_solution_code))
                + "\n"
            )
        elif path.suffix == ".md":
            text, in_gated = strip_markdown(
                path.read_text(encoding="utf-8"), where=str(rel)
            )
            if in_gated:
                raise StudentEditionError(
                    f"{rel}: a {{solution-start}} is never closed by a {{solution-end}}"
                )
            text += "\n"
        else:
            results[rel] = path  # figures, data: copied as they are
            continue
        leaks = find_leaks(text, allow_markers=keep_solution_code)
        if leaks:
            raise StudentEditionError(
                f"{rel}: solution material left after stripping: "
                + "; ".join(leaks[:5])
            )
        results[rel] = text
    _prepare_out(out, src)
    written = []
    for rel, content in results.items():
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy2(content, dest)
        else:
            dest.write_text(content, encoding="utf-8")
        written.append(dest)
    if not (out / "README.md").exists():
        (out / "README.md").write_text(
            "# Student edition\n\nThe course's chapters without their solutions, generated by `make student`. "
            "Each exercise's code cell raises `NotImplementedError` until you fill it in; the check cell after it "
            "explains what is right or wrong. Run a chapter's cells in order.\n",
            encoding="utf-8",
        )
    return written


def list_exercises(src: Path) -> list[Exercise]:
    """Every `{exercise}` in the chapters, in order: chapter file, label, tier (warm-up, core, challenge), title."""
    found = []
    for path in sorted(Path(src).glob("*")):
        if path.suffix == ".ipynb":
            texts = [
                c.source
                for c in nbformat.read(path, as_version=4).cells
                if c.cell_type == "markdown"
            ]
        elif path.suffix == ".md" and path.name not in NOT_COPIED:
            texts = [path.read_text(encoding="utf-8")]
        else:
            continue
        for text in texts:
            lines = text.split("\n")
            for i, line in enumerate(lines):
                d = DIRECTIVE.match(line)
                if not d or d.group("name") not in ("exercise", "exercise-start"):
                    continue
                opts = {}
                for opt in lines[i + 1 :]:
                    m = re.match(r"^\s*:([\w-]+):\s*(.*)$", opt)
                    if not m:
                        break
                    opts[m.group(1)] = m.group(2).strip()
                tier = next(
                    (c for c in opts.get("class", "").split() if c in TIERS), ""
                )
                found.append(
                    Exercise(
                        path.name, opts.get("label", ""), tier, d.group("arg").strip()
                    )
                )
    return found


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "src",
        nargs="?",
        type=Path,
        default=root / "chapters",
        help="chapters folder (default: chapters/)",
    )
    p.add_argument(
        "out",
        nargs="?",
        type=Path,
        default=root / "student",
        help="output folder (default: student/)",
    )
    p.add_argument(
        "--keep-solution-code",
        action="store_true",
        help="keep the code between the nbgrader markers (a source for `nbgrader generate_assignment`); "
        "solution text and outputs are still removed",
    )
    p.add_argument(
        "--list-exercises",
        action="store_true",
        help="print a Markdown table of the exercises and exit",
    )
    args = p.parse_args(argv)
    try:
        if args.list_exercises:
            print("| chapter | exercise | tier | title |\n|---|---|---|---|")
            for e in list_exercises(args.src):
                print(f"| `{e.chapter}` | `{e.label}` | {e.tier} | {e.title} |")
            return 0
        written = build(args.src, args.out, args.keep_solution_code)
    except StudentEditionError as e:
        print(f"student edition: {e}", file=sys.stderr)
        return 1
    n_nb = sum(f.suffix == ".ipynb" for f in written)
    print(
        f"student edition: {n_nb} notebooks and {len(written) - n_nb} other files written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

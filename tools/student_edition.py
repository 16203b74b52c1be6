"""Write the student edition of the course: the chapters with their solutions removed.

    python tools/student_edition.py                   # chapters/ -> student/
    python tools/student_edition.py SRC OUT           # any folder of chapters
    python tools/student_edition.py --list-exercises  # every exercise, as a table

For every chapter notebook:
- code between `### BEGIN SOLUTION` and `### END SOLUTION` (nbgrader's markers) becomes
  a stub that raises NotImplementedError, indented like the markers; the code around
  the markers stays;
- gated solutions (the `{solution-start}` markdown cell, everything up to and including
  the `{solution-end}` cell) are removed, except code cells inside them that hold
  solution markers (stubbed: the student's workspace) or call a checker such as
  `check_dpo_loss(...)` (the student's feedback);
- `{solution}` directive blocks inside markdown cells are removed, and so are cells
  tagged `solution`;
- MyST directives and roles become plain Markdown (Jupyter and Colab show MyST raw): an
  exercise is a heading with its number and tier, a lemma a bold title, a note a quote;
  the math and ordinary code blocks are left as they are;
- every exercise gets an answer cell: Markdown when its solution explains in words,
  code when its solution runs code this edition removes;
- a cell that prints dpolib's source of a function an implementation exercise of the
  chapter asks for (what its checker's reference runs) is replaced by a note;
- outputs, execution counts and widget state are cleared.
Other chapter files are copied (Markdown files with their `{solution}` blocks removed),
except `instructors.md`, which holds the answer key. The result is checked for leaks
before it is written. `student_cells` also returns each cell's role in its exercise,
from which tools/nbgrader_release.py makes nbgrader's metadata.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import shutil
import sys
from dataclasses import dataclass, field
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
# lets a rerun clear OUT safely: only a folder this tool wrote is ever deleted
MARKER_FILE = ".student-edition"
SOLUTION_TAG = "solution"

# A MyST directive opening: ```{name} argument  or  :::{name} argument (fence of 3 or
# more).
DIRECTIVE = re.compile(
    r"^(?P<indent> "
    r"{0,3})(?P<fence>`{3,}|:{3,})\s*\{(?P<name>[A-Za-z0-9_:-]+)\}\s*(?P<arg>.*)$"
)
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
CHECKER_CALL = re.compile(r"\bcheck_[a-z0-9_]+\s*\(|\bdpolib\.exercises\b")
TIERS = ("warm-up", "core", "challenge")


class StudentEditionError(ValueError):
    """A chapter cannot be turned into a student edition safely (unbalanced markers,
    unclosed solution...).
    """


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
    """Index just past the fence block opened at lines[start] (the end of the text if
    it is never closed).
    """
    for j in range(start + 1, len(lines)):
        if _closes(lines[j], fence):
            return j + 1
    return len(lines)


def _replace_markers(
    source: str, stub: tuple[str, ...], where: str
) -> tuple[str, bool]:
    """Replace each BEGIN/END SOLUTION region by `stub`, indented like its BEGIN."""
    out: list[str] = []
    inside, found = False, False
    for n, line in enumerate(source.split("\n"), 1):
        s = line.strip()
        if s == BEGIN:
            if inside:
                raise StudentEditionError(
                    f"{where}: line {n}: {BEGIN!r} inside another solution region; "
                    f"close the first with {END!r}"
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
    """Remove `{solution}` blocks and gated solution text from Markdown; returns (text,
    still inside a gated solution).
    """
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
                    f"{where}: a {{solution-start}} inside another gated solution; "
                    "close the first with {solution-end}"
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
        # an ordinary code block: copy it whole, so examples inside it are not parsed
        if f:
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
    # Magics and shell escapes are not Python: stand a `pass` in for them, at the same
    # indentation.
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
            f"{where}: the cell is not valid Python once its solution is replaced by "
            f"the stub ({e.msg}, line {e.lineno}); "
            "put the markers around whole statements"
        ) from None


# --------------------------------------------------------------------------------------
# MyST to plain Markdown: what Jupyter and Colab can show
# --------------------------------------------------------------------------------------
KIND_NAMES = {
    "prf:theorem": "Theorem",
    "prf:lemma": "Lemma",
    "prf:proposition": "Proposition",
    "prf:corollary": "Corollary",
    "prf:definition": "Definition",
    "prf:example": "Example",
    "prf:remark": "Remark",
    "prf:algorithm": "Algorithm",
    "prf:proof": "Proof",
}
ADMONITIONS = {
    "note",
    "tip",
    "hint",
    "important",
    "warning",
    "caution",
    "attention",
    "danger",
    "error",
    "seealso",
    "admonition",
}
ROLE = re.compile(r"\{(?P<name>[A-Za-z0-9_:+-]+)\}`(?P<body>[^`]*)`")
OPTION = re.compile(r"^\s*:(?P<key>[\w-]+):\s*(?P<value>.*)$")


def _split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's leading `:key: value` lines, and the rest of its body."""
    opts: dict[str, str] = {}
    k = 0
    while k < len(body) and OPTION.match(body[k]):
        m = OPTION.match(body[k])
        opts[m.group("key")] = m.group("value").strip()
        k += 1
    rest = body[k:]
    while rest and not rest[0].strip():
        rest = rest[1:]
    return opts, rest


def _tier(opts: dict[str, str]) -> str:
    return next((c for c in opts.get("class", "").split() if c in TIERS), "")


def _roles(line: str, titles: dict[str, str]) -> str:
    """Inline MyST roles as plain text: references by their titles, citations by their
    keys.
    """

    def render(m: re.Match) -> str:
        name, body = m.group("name"), m.group("body")
        explicit = re.match(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", body)
        if name.startswith("cite"):
            keys = "; ".join(k.strip() for k in body.split(","))
            return keys if name.endswith(":t") else f"({keys})"
        if name == "math":
            return f"${body}$"
        if name in ("prf:ref", "ref", "numref", "eq", "doc", "term"):
            if explicit:
                return explicit.group("text")
            return titles.get(body, f"`{body}`")
        return explicit.group("text") if explicit else body

    return ROLE.sub(render, line)


def _render_directive(
    name: str,
    arg: str,
    opts: dict[str, str],
    body: str,
    exercise_names: dict[str, str],
) -> list[str]:
    """One directive as plain Markdown lines (its body already converted)."""
    body_lines = body.split("\n") if body.strip() else []
    if name in ("exercise", "exercise-start"):
        heading = exercise_names.get(opts.get("label", ""), "Exercise")
        tier = _tier(opts)
        head = (
            f"### {heading}"
            + (f" ({tier})" if tier else "")
            + (f": {arg}" if arg else "")
        )
        return [head, ""] + body_lines
    if name == "exercise-end":
        return []
    if name == "prf:proof":
        return ["*Proof.*", ""] + body_lines
    if name in KIND_NAMES:
        head = f"**{KIND_NAMES[name]}" + (f" ({arg})" if arg else "") + ".**"
        return [head, ""] + body_lines
    if name in ADMONITIONS:
        title = (
            arg
            if name == "admonition"
            else name.capitalize() + (f": {arg}" if arg else "")
        )
        return [f"> **{title}.**", ">"] + [
            f"> {line}" if line else ">" for line in body_lines
        ]
    if name == "math":
        return ["$$", body, "$$"]
    if not body_lines:
        return []  # e.g. {bibliography}, {tableofcontents}: nothing a notebook can show
    head = f"**{name.split(':')[-1].capitalize()}" + (f": {arg}" if arg else "") + ".**"
    return [head, ""] + body_lines


def plain_markdown(
    text: str, exercise_names: dict[str, str], titles: dict[str, str]
) -> str:
    """MyST directives and roles as plain Markdown: a heading with the tier for an
    exercise, a bold title for a lemma, a quote for a note; the text, its math and
    its ordinary code blocks unchanged.
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        d = DIRECTIVE.match(lines[i])
        if d:
            end = _block_end(lines, i, d.group("fence"))
            closed = end - 1 > i and _closes(lines[end - 1], d.group("fence"))
            opts, body = _split_options(lines[i + 1 : end - 1 if closed else end])
            inner = plain_markdown("\n".join(body), exercise_names, titles)
            out += _render_directive(
                d.group("name"), d.group("arg").strip(), opts, inner, exercise_names
            )
            i = end
            continue
        f = FENCE.match(lines[i])
        if f:  # an ordinary code block: verbatim
            end = _block_end(lines, i, f.group("fence"))
            out += lines[i:end]
            i = end
            continue
        out.append(_roles(lines[i], titles))
        i += 1
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


# --------------------------------------------------------------------------------------
# The exercises of a chapter: where they are, what their solutions hold
# --------------------------------------------------------------------------------------
@dataclass
class _ExerciseRegion:
    label: str
    tier: str
    title: str
    number: str  # "3.2": chapter number, then its place in the chapter
    cell: int  # the statement's cell
    last: int  # the last cell of its solution (the statement's cell if it has none)
    prose: bool = (
        False  # its solution explains in words: the student needs a written answer
    )
    removed_code: bool = False  # its solution runs code the student edition removes
    stubs: list[int] = field(default_factory=list)  # cells with solution markers
    checks: list[int] = field(default_factory=list)  # cells that call a checker
    trailing: bool = (
        False  # the cell that ends its solution goes on with the chapter's text
    )


def _chapter_number(name: str) -> str:
    m = re.match(r"^(\d+)", Path(name).name)
    return str(int(m.group(1))) if m else ""


def exercise_regions(nb: nbformat.NotebookNode, name: str) -> list[_ExerciseRegion]:
    """Every exercise of a notebook with the cells of its solution, in order."""
    chapter = _chapter_number(name)
    regions: list[_ExerciseRegion] = []
    by_label: dict[str, _ExerciseRegion] = {}
    gated: _ExerciseRegion | None = None
    closed_here: _ExerciseRegion | None = None  # a solution that ended in this cell
    for k, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown":
            lines = cell.source.split("\n")
            if gated is not None:
                gated.last = k
                gated.prose = gated.prose or SOLUTION_TAG in tags
            i = 0
            while i < len(lines):
                d = DIRECTIVE.match(lines[i])
                fence = None if d else FENCE.match(lines[i])
                if fence:  # an ordinary code block: text, never a directive
                    if gated is not None:
                        gated.prose = True
                    i = _block_end(lines, i, fence.group("fence"))
                    continue
                # ordinary text: a gated solution's prose, or the chapter's text after
                # one
                if not d:
                    if lines[i].strip() and gated is not None:
                        gated.prose = True
                    elif lines[i].strip() and closed_here is not None:
                        closed_here.trailing = True
                    i += 1
                    continue
                kind, arg = d.group("name"), d.group("arg").strip()
                end = _block_end(lines, i, d.group("fence"))
                opts, body = _split_options(lines[i + 1 : end - 1])
                if kind in ("exercise", "exercise-start"):
                    n = len(regions) + 1
                    region = _ExerciseRegion(
                        opts.get("label", ""),
                        _tier(opts),
                        arg,
                        f"{chapter}.{n}" if chapter else str(n),
                        k,
                        k,
                    )
                    regions.append(region)
                    by_label[region.label] = region
                elif kind == "solution-start":
                    gated = by_label.get(arg) or (regions[-1] if regions else None)
                    if gated is not None:
                        gated.last = k
                elif kind == "solution-end":
                    if gated is not None:
                        gated.last = k
                    closed_here, gated = gated, None
                elif kind == "solution":
                    target = by_label.get(arg) or (regions[-1] if regions else None)
                    if target is not None:
                        target.last = max(target.last, k)
                        target.prose = target.prose or any(s.strip() for s in body)
                        closed_here = target
                i = end
            closed_here = None
        elif cell.cell_type == "code":
            has_markers = any(
                line.strip() in (BEGIN, END) for line in cell.source.split("\n")
            )
            owner = gated or (regions[-1] if has_markers and regions else None)
            if owner is None:
                continue
            owner.last = max(owner.last, k)
            if has_markers:
                owner.stubs.append(k)
            elif CHECKER_CALL.search(cell.source):
                owner.checks.append(k)
            elif gated is not None:
                owner.removed_code = True
    return regions


def _titles(
    nb: nbformat.NotebookNode, regions: list[_ExerciseRegion]
) -> dict[str, str]:
    """What a reference to each label reads as: "Exercise 3.2", "Lemma (The DPO loss is
    ...)".
    """
    titles = {r.label: f"Exercise {r.number}" for r in regions}
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for i, line in enumerate(lines):
            d = DIRECTIVE.match(line)
            if d and d.group("name") in KIND_NAMES:
                opts, _ = _split_options(lines[i + 1 :])
                if "label" in opts:
                    arg = d.group("arg").strip()
                    titles[opts["label"]] = KIND_NAMES[d.group("name")] + (
                        f" ({arg})" if arg else ""
                    )
    return titles


# --------------------------------------------------------------------------------------
# Library source that gives an exercise away
# --------------------------------------------------------------------------------------
SOURCE_CALLS = ("show_source", "getsource")


def _checker_references(names: set[str]) -> dict[str, tuple[str, ...]]:
    """For each checker called in a chapter, the dpolib functions its reference runs
    (which the student must write, so the student edition must not print their
    source).
    """
    try:
        from dpolib.course.exercises import CHECKERS
    except ImportError:  # a chapters folder without dpolib: nothing to compare with
        return {}

    def stub(*args: object, **kwargs: object) -> None:
        raise NotImplementedError

    return {n: CHECKERS[n](stub, quiet=True).references for n in names if n in CHECKERS}


def _shown_object(source: str, namespace: dict) -> tuple[str, object] | None:
    """The object a cell like `show_source(preference_losses)` shows, resolved with the
    chapter's imports.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and call.args):
        return None
    fname = (
        call.func.attr
        if isinstance(call.func, ast.Attribute)
        else getattr(call.func, "id", "")
    )
    if fname not in SOURCE_CALLS:
        return None
    expr = ast.unparse(call.args[0])
    if not re.fullmatch(r"[A-Za-z_][\w.]*", expr):
        return None
    try:
        return expr, eval(
            expr, namespace
        )  # a dotted name, looked up among the chapter's imports
    except Exception:  # noqa: BLE001 - a name the imports do not provide: not library source we can judge
        return None


def _qualname(obj: object) -> str:
    obj = getattr(obj, "__func__", obj)
    obj = inspect.unwrap(obj) if callable(obj) else obj
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def revealing_sources(
    nb: nbformat.NotebookNode, regions: list[_ExerciseRegion]
) -> dict[int, tuple[str, list[str]]]:
    """Cells that print the source of a dpolib function an implementation exercise of
    the chapter asks for: cell index -> (the name shown, the labels of the exercises
    it gives away).
    """
    asked: dict[str, list[str]] = {}  # checker -> exercise labels
    for r in regions:
        for k in r.checks:
            for name in re.findall(r"\b(check_[a-z0-9_]+)\s*\(", nb.cells[k].source):
                asked.setdefault(name, []).append(r.label)
    if not asked or not any(
        c.cell_type == "code" and any(f in c.source for f in SOURCE_CALLS)
        for c in nb.cells
    ):
        return {}
    references = _checker_references(set(asked))
    namespace: dict = {}
    for cell in (
        nb.cells
    ):  # the chapter's imports, and nothing else of it, to resolve the names shown
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                try:
                    exec(
                        compile(ast.Module([node], []), "<imports>", "exec"), namespace
                    )
                except Exception:  # noqa: BLE001 - an import that fails here resolves nothing
                    pass
    found: dict[int, tuple[str, list[str]]] = {}
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not any(f in cell.source for f in SOURCE_CALLS):
            continue
        shown = _shown_object(cell.source, namespace)
        if shown is None:
            continue
        expr, obj = shown
        qual = _qualname(obj)
        labels = [
            label
            for checker, refs in references.items()
            if any(ref == qual or ref.startswith(qual + ".") for ref in refs)
            for label in asked[checker]
        ]
        if labels:
            found[k] = (expr, sorted(set(labels), key=labels.index))
    return found


# --------------------------------------------------------------------------------------
# The student edition of one notebook
# --------------------------------------------------------------------------------------
@dataclass
class Role:
    """What a cell of the student edition is for (nbgrader's metadata follows it)."""

    kind: str  # "statement", "stub", "check", "answer", "work" or "hidden-source"
    label: str
    tier: str


def _new_cell(kind: str, source: str) -> nbformat.NotebookNode:
    """A new cell without an id: student_cells gives it one, the same on every run."""
    cell = (
        nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    )(source)
    cell.pop("id", None)
    return cell


def _answer_cells(region: _ExerciseRegion) -> list[tuple[nbformat.NotebookNode, Role]]:
    """The cells a student answers an exercise in, after the ones the chapter already
    gives.
    """
    cells = []
    if region.removed_code:
        cells.append(
            (
                _new_cell(
                    "code",
                    f"# Exercise {region.number}: your code (this cell is not "
                    "checked).",
                ),
                Role("work", region.label, region.tier),
            )
        )
    if region.prose or not region.stubs:
        cells.append(
            (
                _new_cell(
                    "markdown",
                    f"**Your answer to Exercise {region.number}.** {TEXT_STUB}",
                ),
                Role("answer", region.label, region.tier),
            )
        )
    return cells


def student_cells(
    nb: nbformat.NotebookNode, name: str = "notebook", keep_solution_code: bool = False
) -> tuple[nbformat.NotebookNode, list[Role | None]]:
    """The student edition of `nb` and, for each of its cells, its role in an exercise
    (None for the chapter's own cells).
    """
    regions = exercise_regions(nb, name)
    exercise_names = {r.label: f"Exercise {r.number}" for r in regions}
    titles = _titles(nb, regions)
    hidden = revealing_sources(nb, regions)
    statement = {r.cell: r for r in regions}
    after: dict[int, list[_ExerciseRegion]] = {}  # answer cells go after these cells
    before: dict[
        int, list[_ExerciseRegion]
    ] = {}  # or before them, when the chapter's text goes on there
    for r in regions:
        (before if r.trailing else after).setdefault(r.last, []).append(r)
    stub_of = {k: r for r in regions for k in r.stubs}
    check_of = {k: r for r in regions for k in r.checks}
    cells: list[nbformat.NotebookNode] = []
    roles: list[Role | None] = []
    in_gated = False
    for k, cell in enumerate(nb.cells):
        where = f"{name}, cell {k}"
        cell = nbformat.from_dict(
            cell
        )  # a deep copy: the source notebook is left alone
        tags = cell.get("metadata", {}).get("tags", [])
        role: Role | None = None
        keep = SOLUTION_TAG not in tags
        if keep and cell.cell_type == "markdown":
            text, in_gated = strip_markdown(cell.source, in_gated, where)
            cell.source = plain_markdown(text, exercise_names, titles)
            keep = bool(cell.source.strip())
            if k in statement:
                role = Role("statement", statement[k].label, statement[k].tier)
        elif keep and cell.cell_type == "code":
            has_markers = any(
                line.strip() in (BEGIN, END) for line in cell.source.split("\n")
            )
            if in_gated and not (has_markers or CHECKER_CALL.search(cell.source)):
                keep = False
            if has_markers and not keep_solution_code:
                cell.source, _ = _replace_markers(cell.source, CODE_STUB, where)
                _check_syntax(cell.source, where)
            if k in hidden:
                shown, labels = hidden[k]
                which = ", ".join(exercise_names.get(label, label) for label in labels)
                cell = _new_cell(
                    "markdown",
                    f"*The book shows the source of dpolib's `{shown}` here. The "
                    "student edition leaves it "
                    f"out: {which} asks you to write it. Read it in the book once you "
                    "have.*",
                )
                role = Role("hidden-source", labels[0], "")
            else:
                cell.outputs = []
                cell.execution_count = None
                for key in ("execution", "collapsed", "scrolled"):
                    cell.metadata.pop(key, None)
                if k in stub_of:
                    role = Role("stub", stub_of[k].label, stub_of[k].tier)
                elif k in check_of:
                    role = Role("check", check_of[k].label, check_of[k].tier)
        elif keep and in_gated:  # a raw cell inside a gated solution
            keep = False
        for region in before.get(k, []):
            for new, new_role in _answer_cells(region):
                cells.append(new)
                roles.append(new_role)
        if keep:
            cells.append(cell)
            roles.append(role)
        for region in after.get(k, []):
            for new, new_role in _answer_cells(region):
                cells.append(new)
                roles.append(new_role)
    if in_gated:
        raise StudentEditionError(
            f"{name}: a {{solution-start}} is never closed by a {{solution-end}} cell"
        )
    out = nbformat.from_dict(nb)
    out.cells = cells
    out.metadata.pop("widgets", None)
    if cells and cells[0].cell_type == "markdown":
        note = _new_cell(
            "markdown",
            "*Student edition: solutions removed.* Each exercise has a cell for your "
            "answer: a Markdown cell "
            "for what you write, a code cell for what you run. An implementation's "
            "code cell raises "
            "`NotImplementedError` until you write your code where it says `# YOUR "
            "CODE HERE`; the check "
            "cell after it then tells you what is right or wrong. Run the cells in "
            "order.",
        )
        out.cells.insert(1, note)
        roles.insert(1, None)
    with_ids = bool(nb.cells) and "id" in nb.cells[0]
    taken = {c.get("id") for c in out.cells}
    for k, cell in enumerate(out.cells):  # ids for the new cells, the same on every run
        if with_ids and not cell.get("id"):
            cell["id"] = next(
                f"student-{k}{s}"
                for s in ("", "a", "b", "c")
                if f"student-{k}{s}" not in taken
            )
            taken.add(cell["id"])
        elif not with_ids:
            cell.pop("id", None)
    return out, roles


def student_notebook(
    nb: nbformat.NotebookNode, name: str = "notebook", keep_solution_code: bool = False
) -> nbformat.NotebookNode:
    """A copy of `nb` without solutions and outputs (see the module docstring for the
    rules).
    """
    return student_cells(nb, name, keep_solution_code)[0]


def find_leaks(text: str, allow_markers: bool = False) -> list[str]:
    """Lines of `text` (a notebook's JSON or a Markdown file) that still carry solution
    material.
    """
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
                f"{out} exists, is not empty and was not written by this tool; choose "
                "another folder or empty it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).write_text(
        "Written by tools/student_edition.py; `make student` deletes and rewrites "
        "this folder.\n"
    )


def build(src: Path, out: Path, keep_solution_code: bool = False) -> list[Path]:
    """Write the student edition of every chapter in `src` to `out`; returns the files
    written.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise StudentEditionError(f"no chapters folder at {src}")
    # Transform everything first: a chapter that fails leaves the previous edition in
    # place.
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
            "# Student edition\n\nThe course's chapters without their solutions, "
            "generated by `make student`. "
            "Each exercise's code cell raises `NotImplementedError` until you fill it "
            "in; the check cell after it "
            "explains what is right or wrong. Run a chapter's cells in order.\n",
            encoding="utf-8",
        )
    return written


def list_exercises(src: Path) -> list[Exercise]:
    """Every `{exercise}` in the chapters, in order: chapter file, label, tier
    (warm-up, core, challenge), title.
    """
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
        help="keep the code between the nbgrader markers (a source for `nbgrader "
        "generate_assignment`); "
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
        f"student edition: {n_nb} notebooks and {len(written) - n_nb} other files "
        f"written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

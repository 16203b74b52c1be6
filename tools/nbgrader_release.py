"""Write an nbgrader course's source folder from the chapters, metadata generated.

    python tools/nbgrader_release.py COURSE        # every chapter, one assignment each
    python tools/nbgrader_release.py COURSE 02_optimal_policy 03_dpo_loss -a week1
    cd COURSE && nbgrader generate_assignment week1   # release, collect, autograde

Each chapter goes through the student edition's rules (tools/student_edition.py:
solution text removed, directives as plain Markdown, answer cells added, library source
that gives an exercise away left out), except that the code between the solution
markers stays for nbgrader to strip. Then every exercise cell gets nbgrader's metadata
from its role, so no one marks cells by hand:

- the exercise's statement, and a note standing in for hidden library source: read-only;
- a code cell with solution markers: "Autograded answer" (nbgrader replaces the
  solution with its stub);
- a checker cell: "Autograder tests", worth the tier's points; each bare checker call
  becomes `assert check_...(...)`, so a failed check scores 0 and its printed report is
  the feedback;
- a written-answer cell: "Manually graded answer", worth the tier's points.

The chapter's other cells stay unmarked. COURSE/nbgrader_config.py is written if
missing.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "student_edition", Path(__file__).with_name("student_edition.py")
)
se = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("student_edition", se)
_spec.loader.exec_module(se)

TIER_POINTS = {
    "warm-up": 1,
    "core": 2,
    "challenge": 3,
}  # per graded cell of an exercise
SCHEMA_VERSION = 3  # nbgrader 0.9's cell metadata
CONFIG = """\
# Written by tools/nbgrader_release.py (edit freely: the tool never overwrites it).
c = get_config()  # noqa: F821 - nbgrader provides it
c.CourseDirectory.course_id = "dpo-course"
# A chapter cell can train for a minute on a slow machine; nbgrader's default is 30 s.
c.Execute.timeout = 600
"""


class ReleaseError(ValueError):
    """The chapters cannot become an nbgrader source folder (bad names, bad cells)."""


def _metadata(
    grade_id: str, *, solution: bool, grade: bool, locked: bool, points: int = 0
) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": SCHEMA_VERSION,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return meta


def assert_checks(source: str, where: str) -> str:
    """The cell with each top-level `check_...(...)` statement turned into an assert
    (for nbgrader).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ReleaseError(
            f"{where}: the checker cell is not valid Python ({e.msg})"
        ) from None
    lines = source.split("\n")
    calls = [
        node
        for node in tree.body
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id.startswith("check_")
    ]
    if not calls:
        raise ReleaseError(
            f"{where}: a checker cell must call its checker as a statement, "
            "e.g. `check_dpo_loss(my_dpo_loss)`"
        )
    for node in reversed(calls):  # from the bottom, so earlier line numbers stay right
        call = ast.get_source_segment(source, node.value)
        name = node.value.func.id
        message = f"{name} did not pass: its report above says why"
        lines[node.lineno - 1 : node.end_lineno] = [f"assert {call}, {message!r}"]
    return "\n".join(lines)


def nbgrader_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The nbgrader source version of a chapter: the student edition with the solution
    code kept and nbgrader metadata on every exercise cell.
    """
    out, roles = se.student_cells(nb, name, keep_solution_code=True)
    counts: dict[str, int] = {}
    for k, (cell, role) in enumerate(zip(out.cells, roles)):
        if role is None:
            continue
        key = f"{role.label or 'exercise'}-{role.kind}"
        counts[key] = counts.get(key, 0) + 1
        grade_id = key if counts[key] == 1 else f"{key}-{counts[key]}"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", grade_id):
            raise ReleaseError(
                f"{name}: exercise label {role.label!r} is not a valid grade id"
            )
        points = TIER_POINTS.get(role.tier, 1)
        where = f"{name}, cell {k}"
        if role.kind in ("statement", "hidden-source"):
            meta = _metadata(grade_id, solution=False, grade=False, locked=True)
        elif role.kind == "stub":
            meta = _metadata(grade_id, solution=True, grade=False, locked=False)
        elif role.kind == "check":
            cell.source = assert_checks(cell.source, where)
            meta = _metadata(
                grade_id, solution=False, grade=True, locked=True, points=points
            )
        elif role.kind == "answer":
            meta = _metadata(
                grade_id, solution=True, grade=True, locked=False, points=points
            )
        else:  # "work": the student's own code cell, not graded
            continue
        cell.metadata["nbgrader"] = meta
    out.metadata.setdefault(
        "kernelspec",
        {"name": "python3", "display_name": "Python 3", "language": "python"},
    )
    return out


def chapter_paths(chapters_dir: Path, names: list[str]) -> list[Path]:
    """The chapter notebooks named (by file name or stem), or all of them."""
    every = sorted(Path(chapters_dir).glob("*.ipynb"))
    if not names:
        return every
    by_name = {p.stem: p for p in every} | {p.name: p for p in every}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ReleaseError(
            f"no chapter {', '.join(missing)} in {chapters_dir}; "
            f"the chapters are {', '.join(p.stem for p in every)}"
        )
    return [by_name[n] for n in names]


def write_source(
    course: Path,
    chapters: list[Path],
    assignment: str | None = None,
) -> list[Path]:
    """Write COURSE/source/<assignment>/<chapter>.ipynb (one assignment per chapter
    when `assignment` is None) and COURSE/nbgrader_config.py if missing; returns the
    notebooks.
    """
    course = Path(course)
    if assignment is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", assignment):
        raise ReleaseError(
            f"assignment {assignment!r}: use letters, digits, '-' and '_' only "
            "(nbgrader's rule)"
        )
    notebooks = {
        p: nbgrader_notebook(nbformat.read(p, as_version=4), p.name) for p in chapters
    }
    written = []
    for path, nb in notebooks.items():
        folder = course / "source" / (assignment or path.stem)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        nbformat.write(nb, target)
        written.append(target)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "course", type=Path, help="the nbgrader course folder (created if missing)"
    )
    p.add_argument(
        "chapters", nargs="*", help="chapter names, e.g. 03_dpo_loss (default: all)"
    )
    p.add_argument(
        "--chapters-dir",
        type=Path,
        default=ROOT / "chapters",
        help="where the chapters are (default: chapters/)",
    )
    p.add_argument(
        "-a",
        "--assignment",
        help="put the chapters into one assignment of this name (default: one per "
        "chapter)",
    )
    args = p.parse_args(argv)
    try:
        paths = chapter_paths(args.chapters_dir, args.chapters)
        written = write_source(args.course, paths, args.assignment)
    except (ReleaseError, se.StudentEditionError) as e:
        print(f"nbgrader release: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(f"nbgrader release: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

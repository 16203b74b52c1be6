"""The real nbgrader, end to end: metadata generated from the chapters,
`generate_assignment` on every chapter, `autograde` and `generate_feedback` of three
submissions of one chapter.

Autograde runs on chapter 03 only: it is the chapter with the most auto-checked
exercises (three checkers: DPO loss, implicit reward, gradient weight), so one mistake
among right answers gives partial marks, and its checkers name the course's best-known
mistake (the misplaced bracket). Each extra chapter would add three more executions of a
whole chapter.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
CHAPTER = "03_dpo_loss"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


release_tool = _load("nbgrader_release", ROOT / "tools" / "nbgrader_release.py")
se = release_tool.se
leak_test = _load("_student_edition_tests", ROOT / "tests" / "test_student_edition.py")

# What chapters/instructors.md tells an instructor to run (each must appear there
# verbatim).
COMMANDS = [
    f"python tools/nbgrader_release.py course {CHAPTER}",
    "cd course",
    f"nbgrader generate_assignment {CHAPTER}",
    f"nbgrader autograde {CHAPTER} --create",
    f"nbgrader generate_feedback {CHAPTER}",
]

# The misplaced bracket of ex-03-bracket, written into the DPO loss of a submission.
BRACKET_ERROR = (
    "    return -F.logsigmoid(\n"
    "        beta * (policy_chosen_logps - policy_rejected_logps)\n"
    "        - (reference_chosen_logps - reference_rejected_logps)\n"
    "    ).mean()"
)


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the nbgrader command line in `course`, as an instructor would (its tools on
    PATH).
    """
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def marked(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    return {
        c.metadata["nbgrader"]["grade_id"]: c
        for c in nb.cells
        if "nbgrader" in c.metadata
    }


@pytest.mark.skipif(not list(CHAPTERS.glob("*.ipynb")), reason="no chapters yet")
def test_generate_assignment_on_every_chapter(tmp_path):
    course = tmp_path / "course"
    chapters = release_tool.chapter_paths(CHAPTERS, [])
    release_tool.write_source(course, chapters, "all")
    nbgrader(course, "generate_assignment", "all")
    for path in chapters:
        source = nbformat.read(course / "source" / "all" / path.name, as_version=4)
        released = nbformat.read(course / "release" / "all" / path.name, as_version=4)
        nbformat.validate(released)
        text = nbformat.writes(released)
        assert not se.find_leaks(text), (path.name, se.find_leaks(text)[:3])
        sol, rest = leak_test.solution_lines(nbformat.read(path, as_version=4))
        distinctive = {
            s for s in sol - rest if len(s) >= 8 and re.search(r"[A-Za-z]{3}", s)
        }
        lines = {line.strip() for c in released.cells for line in c.source.split("\n")}
        assert not distinctive & lines, (path.name, sorted(distinctive & lines)[:5])
        cells = marked(released)
        assert set(cells) == set(marked(source)), path.name
        exercises = [
            e.label for e in se.list_exercises(CHAPTERS) if e.chapter == path.name
        ]
        for (
            label
        ) in exercises:  # each exercise: a read-only statement and a graded cell
            assert cells[f"{label}-statement"].metadata["nbgrader"]["locked"], label
            assert any(
                g.startswith(f"{label}-") and c.metadata["nbgrader"]["grade"]
                for g, c in cells.items()
            ), label
        for grade_id, cell in cells.items():
            meta = cell.metadata["nbgrader"]
            if grade_id.endswith(("-check", "-check-2", "-check-3")):
                assert meta["grade"] and meta["locked"] and meta["points"] > 0
                assert cell.source.lstrip().startswith(
                    ("assert check_", "from ", "import ")
                )
            if "-stub" in grade_id:
                assert meta["solution"] and "raise NotImplementedError()" in cell.source
            if grade_id.endswith("-answer"):
                assert (
                    meta["solution"] and meta["grade"] and cell.cell_type == "markdown"
                )


@pytest.mark.slow  # three executions of chapter 03: about 100 s of CPU
@pytest.mark.skipif(
    not (CHAPTERS / f"{CHAPTER}.ipynb").exists(), reason="no chapter 03 yet"
)
def test_autograde_full_zero_and_partial_marks(tmp_path):
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    assert release_tool.main([str(course), CHAPTER]) == 0
    nbgrader(course, "generate_assignment", CHAPTER)
    name = f"{CHAPTER}.ipynb"
    source = nbformat.read(course / "source" / CHAPTER / name, as_version=4)
    release = nbformat.read(course / "release" / CHAPTER / name, as_version=4)

    solved = marked(source)
    mistake = nbformat.from_dict(release)
    for grade_id, cell in marked(mistake).items():
        if grade_id == "ex-03-dpo-loss-stub":
            stub = "    # YOUR CODE HERE\n    raise NotImplementedError()"
            assert stub in cell.source
            cell.source = cell.source.replace(stub, BRACKET_ERROR)
        elif "-stub" in grade_id:  # the other two functions right
            cell.source = solved[grade_id].source
    submissions = {"solved": source, "unsolved": release, "mistake": mistake}
    for student, nb in submissions.items():
        folder = course / "submitted" / student / CHAPTER
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / name)

    nbgrader(course, "autograde", CHAPTER, "--create")
    nbgrader(course, "generate_feedback", CHAPTER)

    tests = [g for g in solved if "-check" in g]
    assert len(tests) == 3
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:

        def scores(student):
            return {
                g: gb.find_grade(g, CHAPTER, CHAPTER, student).auto_score for g in tests
            }

        maximum = {g: float(solved[g].metadata["nbgrader"]["points"]) for g in tests}
        assert scores("solved") == maximum
        assert scores("unsolved") == dict.fromkeys(tests, 0.0)
        partial = scores("mistake")
        assert partial["ex-03-dpo-loss-check"] == 0.0
        assert 0 < sum(partial.values()) < sum(maximum.values())
        # written answers wait for a person
        answer = gb.find_grade("ex-03-bracket-answer", CHAPTER, CHAPTER, "solved")
        assert answer.auto_score is None and answer.needs_manual_grade

    # The unsolved release ran top to bottom: every code cell executed, and the only
    # errors are
    # the failed checks (the stubs raise only when called, and the checkers catch that).
    graded = nbformat.read(
        course / "autograded" / "unsolved" / CHAPTER / name, as_version=4
    )
    code = [c for c in graded.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    failing = [
        c.metadata.get("nbgrader", {}).get("grade_id")
        for c in code
        if any(o.output_type == "error" for o in c.outputs)
    ]
    assert sorted(failing) == sorted(tests)
    unsolved_text = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "not implemented yet" in unsolved_text.lower()

    # The feedback holds the checker's diagnosis of the mistake.
    feedback = (
        course / "feedback" / "mistake" / CHAPTER / f"{CHAPTER}.html"
    ).read_text()
    assert "bracket error" in feedback and "check_dpo_loss: not yet." in feedback


def test_instructors_page_shows_the_tested_commands():
    text = (CHAPTERS / "instructors.md").read_text()
    for command in COMMANDS:
        assert command in text, f"instructors.md should show `{command}`"

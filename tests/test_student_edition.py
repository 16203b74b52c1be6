"""The student edition keeps the exercises, removes every solution, and still runs up to
the first exercise.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"

_spec = importlib.util.spec_from_file_location(
    "student_edition", ROOT / "tools" / "student_edition.py"
)
se = importlib.util.module_from_spec(_spec)
sys.modules["student_edition"] = se
_spec.loader.exec_module(se)

# Strings that exist only inside solutions of the fixture: none may reach the student
# edition.
SECRETS = [
    "secret_margin_zebra",
    "ZEBRA_SOLUTION_TEXT",
    "SECRET_BRACKET_ANSWER",
    "SECRET_EXPERIMENT",
    "SECRET_TOPLEVEL",
    "SECRET_MD_ANSWER",
    "SECRET_TAGGED_CELL",
    "SECRET_MD_FILE",
]


def fixture_notebook() -> nbformat.NotebookNode:
    ran = new_code_cell(
        "print('hello')",
        execution_count=3,
        outputs=[new_output("stream", name="stdout", text="hello\n")],
    )
    cells = [
        new_markdown_cell(
            "# A fixture chapter\n\n**Learning goals** ...\n\n**Time** 1 minute."
        ),
        new_code_cell(
            'import sys\nif "google.colab" in sys.modules:\n    %pip install -q dpolib',
            metadata={"tags": ["hide-input"]},
        ),
        new_code_cell(
            "from dpolib.course.exercises import check_gradient_weight\nvalue = 21 * "
            "2\nprint('before', value)"
        ),
        ran,
        new_markdown_cell(
            "## Exercises\n\n```{exercise} The weight\n:label: ex-fx-weight\n:class: "
            "core\n"
            "Write the DPO gradient weight.\n```"
        ),
        new_markdown_cell(
            "```{solution-start} ex-fx-weight\n:class: dropdown\n```\nThe "
            "ZEBRA_SOLUTION_TEXT explains it."
        ),
        new_code_cell(
            "import torch\n\n\ndef my_weight(chosen_rewards, rejected_rewards):\n"
            '    """sigma(r_l - r_w), one weight per pair."""\n'
            "    ### BEGIN SOLUTION\n"
            "    secret_margin_zebra = rejected_rewards - chosen_rewards\n"
            "    return torch.sigmoid(secret_margin_zebra)\n"
            "    ### END SOLUTION"
        ),
        new_code_cell("check_gradient_weight(my_weight)"),
        new_code_cell("print('SECRET_EXPERIMENT: a solution-only experiment')"),
        new_markdown_cell("```{solution-end}\n```"),
        new_markdown_cell(
            "```{exercise} The bracket\n:label: ex-fx-bracket\n:class: warm-up\nFind "
            "the error.\n```\n\n"
            "````{solution} ex-fx-bracket\n:class: dropdown\nThe "
            "SECRET_BRACKET_ANSWER:\n"
            "```python\nloss = beta * (a - b)\n```\n````\n\nText after the solution "
            "stays."
        ),
        new_markdown_cell(
            "### BEGIN SOLUTION\nSECRET_MD_ANSWER in nbgrader style\n### END SOLUTION"
        ),
        new_code_cell("x = 'SECRET_TAGGED_CELL'", metadata={"tags": ["solution"]}),
        new_code_cell(
            "### BEGIN SOLUTION\nanswer = 'SECRET_TOPLEVEL'\n### END "
            "SOLUTION\nprint(answer)"
        ),
        new_markdown_cell("## References"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["widgets"] = {"state": {}}
    return nb


@pytest.fixture
def built(tmp_path):
    src = tmp_path / "chapters"
    src.mkdir()
    nbformat.write(fixture_notebook(), src / "01_fixture.ipynb")
    (src / "notes.md").write_text(
        "# Notes\n\n```{solution} ex-x\nSECRET_MD_FILE\n```\n\nKept.\n"
    )
    (src / "instructors.md").write_text("# For instructors\n\nthe answer key\n")
    (src / "figure.png").write_bytes(b"\x89PNG fake")
    out = tmp_path / "student"
    assert se.main([str(src), str(out)]) == 0
    return src, out


def all_text(folder: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()
    )


def test_no_solution_leaks(built):
    src, out = built
    text = all_text(out)
    for secret in SECRETS:
        assert secret in all_text(src) and secret not in text, secret
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert "{solution" not in text
    assert not (out / "instructors.md").exists(), (
        "the answer key must not ship to students"
    )
    assert (out / "figure.png").read_bytes() == b"\x89PNG fake"
    assert "Kept." in (out / "notes.md").read_text()


def test_structure_is_kept_and_outputs_cleared(built):
    _, out = built
    nb = nbformat.read(out / "01_fixture.ipynb", as_version=4)
    nbformat.validate(nb)
    sources = [c.source for c in nb.cells]
    assert sources[0].startswith("# A fixture chapter")
    assert "Student edition" in sources[1]
    assert any("### Exercise 1.1 (core): The weight" in s for s in sources) and any(
        "Text after the solution stays." in s for s in sources
    )
    assert "widgets" not in nb.metadata
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None
    assert any(c.metadata.get("tags") == ["hide-input"] for c in nb.cells)
    stub_cell = next(s for s in sources if "def my_weight" in s)
    # the code around the markers stays, the stub is indented like the markers
    assert (
        '    """sigma(r_l - r_w), one weight per pair."""\n    # YOUR CODE HERE\n    '
        "raise NotImplementedError()" in stub_cell
    )
    assert (
        "check_gradient_weight(my_weight)" in sources
    )  # the check inside the gated solution is kept
    assert "*Your answer here.*" in sources


def test_stub_raises_not_implemented(built):
    _, out = built
    nb = nbformat.read(out / "01_fixture.ipynb", as_version=4)
    namespace: dict = {}
    exec(next(c.source for c in nb.cells if "def my_weight" in c.source), namespace)
    with pytest.raises(NotImplementedError):
        namespace["my_weight"](None, None)


def test_student_edition_runs_up_to_the_first_exercise(built):
    from nbclient import NotebookClient

    _, out = built
    nb = nbformat.read(out / "01_fixture.ipynb", as_version=4)
    # The Colab cell uses %pip only inside Colab; the kernel is this interpreter's
    # (dpolib is installed here).
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(out)}},
    ).execute()
    errors = [
        (i, o)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    first_exercise = next(
        i for i, c in enumerate(nb.cells) if c.source.startswith("### Exercise")
    )
    assert all(i > first_exercise for i, _ in errors), errors
    check_cell = next(
        c for c in nb.cells if "check_gradient_weight(my_weight)" in c.source
    )
    printed = "".join(o.get("text", "") for o in check_cell.outputs)
    assert "not implemented yet" in printed.lower() and not any(
        o.output_type == "error" for o in check_cell.outputs
    )
    # the report is printed once: the returned CheckResult adds no second copy as the
    # cell's value
    assert [o.output_type for o in check_cell.outputs] == ["stream"] and printed.count(
        "check_gradient_weight:"
    ) == 1
    # the only error is the top-level stub of the last exercise, and it is
    # NotImplementedError
    assert [o.ename for _, o in errors] == ["NotImplementedError"]
    # the answer cells the tool adds run too: a comment, and Markdown
    work = [c for c in nb.cells if c.source.startswith("# Exercise 1.1: your code")]
    assert len(work) == 1 and work[0].outputs == []


def test_broken_markers_are_refused(tmp_path):
    for bad, message in [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
        ("### END SOLUTION\n", "without"),
        ("x = (\n### BEGIN SOLUTION\n1\n### END SOLUTION\n)", "not valid Python"),
    ]:
        nb = new_notebook(cells=[new_markdown_cell("# T"), new_code_cell(bad)])
        with pytest.raises(se.StudentEditionError, match=message):
            se.student_notebook(nb, "bad.ipynb")
    nb = new_notebook(
        cells=[
            new_markdown_cell("# T"),
            new_markdown_cell("```{solution-start} ex\n```\nopen forever"),
        ]
    )
    with pytest.raises(se.StudentEditionError, match="never closed"):
        se.student_notebook(nb, "bad.ipynb")


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    src = tmp_path / "chapters"
    src.mkdir()
    nbformat.write(new_notebook(cells=[new_markdown_cell("# T")]), src / "a.ipynb")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    assert se.main([str(src), str(foreign)]) == 1
    assert (foreign / "keep.txt").read_text() == "precious"
    out = tmp_path / "student"
    assert se.main([str(src), str(out)]) == 0
    (out / "stale.ipynb").write_text("{}")
    assert se.main([str(src), str(out)]) == 0  # a rerun clears its own folder
    assert not (out / "stale.ipynb").exists()


def test_keep_solution_code_for_nbgrader(tmp_path):
    nb = se.student_notebook(fixture_notebook(), "fx.ipynb", keep_solution_code=True)
    text = nbformat.writes(nb)
    assert (
        "secret_margin_zebra" in text and "### BEGIN SOLUTION" in text
    )  # nbgrader strips these itself
    assert (
        "ZEBRA_SOLUTION_TEXT" not in text
        and "SECRET_BRACKET_ANSWER" not in text
        and "SECRET_EXPERIMENT" not in text
    )


def test_list_exercises(tmp_path):
    src = tmp_path / "chapters"
    src.mkdir()
    nbformat.write(fixture_notebook(), src / "01_fixture.ipynb")
    found = [(e.chapter, e.label, e.tier, e.title) for e in se.list_exercises(src)]
    assert found == [
        ("01_fixture.ipynb", "ex-fx-weight", "core", "The weight"),
        ("01_fixture.ipynb", "ex-fx-bracket", "warm-up", "The bracket"),
    ]


# --- the real chapters, when they exist
# ---------------------------------------------------------
def solution_lines(nb: nbformat.NotebookNode) -> tuple[set[str], set[str]]:
    """(lines only solutions contain, lines outside solutions), classified
    independently of the tool.
    """
    sol, rest = set(), set()
    gated = False
    for cell in nb.cells:
        src = cell.source
        lines = src.split("\n")
        if cell.cell_type == "code":
            inside = False
            keep_cell = "### BEGIN SOLUTION" in src or re.search(
                r"\bcheck_\w+\s*\(", src
            )
            for line in lines:
                if line.strip() in ("### BEGIN SOLUTION", "### END SOLUTION"):
                    inside = line.strip() == "### BEGIN SOLUTION"
                    continue
                (sol if inside or (gated and not keep_cell) else rest).add(line.strip())
        else:
            fence = None
            for line in lines:
                if "{solution-start}" in line:
                    gated = True
                if "{solution-end}" in line:
                    gated = False
                    sol.add(line.strip())
                    continue
                m = re.match(r"^\s*(`{3,}|:{3,})\s*\{solution\}", line)
                if fence is None and m:
                    fence = m.group(1)
                    sol.add(line.strip())
                    continue
                if fence is not None:
                    sol.add(line.strip())
                    if (
                        line.strip()
                        and set(line.strip()) == {fence[0]}
                        and len(line.strip()) >= len(fence)
                    ):
                        fence = None
                    continue
                (sol if gated else rest).add(line.strip())
    return sol, rest


REAL = sorted(CHAPTERS.glob("*.ipynb")) if CHAPTERS.is_dir() else []


@pytest.mark.skipif(not REAL, reason="no chapter notebooks yet")
def test_real_chapters_leak_nothing(tmp_path):
    out = tmp_path / "student"
    assert se.main([str(CHAPTERS), str(out)]) == 0
    assert not (out / "instructors.md").exists()
    for path in REAL:
        student_nb = nbformat.read(out / path.name, as_version=4)
        nbformat.validate(student_nb)
        text = (out / path.name).read_text()
        assert not se.find_leaks(text), (path.name, se.find_leaks(text)[:3])
        student_lines = {
            line.strip() for c in student_nb.cells for line in c.source.split("\n")
        }
        sol, rest = solution_lines(nbformat.read(path, as_version=4))
        distinctive = {
            s for s in sol - rest if len(s) >= 8 and re.search(r"[A-Za-z]{3}", s)
        }
        leaked = distinctive & student_lines
        assert not leaked, (path.name, sorted(leaked)[:5])
        for c in student_nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None


KINDS = {
    "calculation",
    "predict-then-run",
    "derivation",
    "implementation",
    "experiment",
    "interpretation",
    "reasoning",
    "modelling with the calculator",
}


def instructors_rows() -> list[list[str]]:
    """The rows of the per-exercise table of instructors.md, as stripped cells."""
    text = (CHAPTERS / "instructors.md").read_text()
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if re.match(r"^\|\s*`[\w.-]+\.ipynb`\s*\|", line)
    ]


@pytest.mark.skipif(
    not (CHAPTERS / "instructors.md").exists(), reason="no instructors page yet"
)
def test_instructors_table_matches_the_chapters():
    """Every exercise of the chapters has exactly one row in instructors.md, with its
    real chapter and tier, and every row is a real exercise.
    """
    text = (CHAPTERS / "instructors.md").read_text()
    exercises = se.list_exercises(CHAPTERS)
    real = {(e.chapter, e.label): e.tier for e in exercises}
    assert len(real) == len(exercises), "two exercises share a label"
    rows = instructors_rows()
    listed = [(row[0].strip("`"), row[1].strip("`")) for row in rows]
    duplicated = sorted({x for x in listed if listed.count(x) > 1})
    assert not duplicated, f"instructors.md lists these exercises twice: {duplicated}"
    missing = sorted(set(real) - set(listed))
    assert not missing, f"exercises with no row in instructors.md's table: {missing}"
    invented = sorted(set(listed) - set(real))
    assert not invented, (
        "instructors.md's table lists exercises that no chapter has (or in the wrong "
        f"chapter): {invented}"
    )
    for label in set(re.findall(r"`(ex-[\w-]+)`", text)):
        assert label in {e.label for e in exercises}, (
            f"instructors.md names {label}, which no chapter has"
        )
    for row, key in zip(rows, listed):
        assert row[2] == real[key], (
            f"{key[1]}: instructors.md says {row[2]}, the chapter says {real[key]}"
        )


@pytest.mark.skipif(
    not (CHAPTERS / "instructors.md").exists(), reason="no instructors page yet"
)
def test_instructors_table_kinds_checkers_times_and_answers():
    """Each row has a known kind, a time, and a checker exactly when it is an
    implementation (one that its chapter calls); each exercise has an entry in the
    answer key.
    """
    from dpolib.course import exercises as ex

    text = (CHAPTERS / "instructors.md").read_text()
    key = text[text.index("## Answer key") :]
    for chapter, label, _tier, kind, checker, time in instructors_rows():
        chapter, label = chapter.strip("`"), label.strip("`")
        kinds = {k.strip() for k in kind.split(",")}
        assert kinds and kinds <= KINDS, f"{label}: unknown kind {kind!r}"
        assert re.fullmatch(r"\d+ min", time), (
            f"{label}: the time should read like '15 min', not {time!r}"
        )
        checkers = re.findall(r"`(check_\w+)`", checker)
        if "implementation" in kinds:
            assert checkers, (
                f"{label}: an implementation exercise must name its checker"
            )
            source = "\n".join(
                c.source for c in nbformat.read(CHAPTERS / chapter, as_version=4).cells
            )
            for name in checkers:
                assert name in ex.__all__, (
                    f"{label}: {name} is not a checker of dpolib.course.exercises"
                )
                assert re.search(rf"\b{name}\(", source), (
                    f"{label}: {chapter} never calls {name}"
                )
        else:
            assert not checker, (
                f"{label}: only implementation exercises have a checker, not "
                f"{checker!r}"
            )
        assert re.search(rf"^- `{re.escape(label)}`: \S", key, re.M), (
            f"{label}: no entry in the answer key"
        )


@pytest.mark.skipif(
    not (CHAPTERS / "instructors.md").exists(), reason="no instructors page yet"
)
def test_every_chapter_has_three_to_five_exercises_and_a_checked_one():
    """What the landing page promises: every chapter has 3-5 exercises, at least one
    of them an implementation graded by a checker.
    """
    per_chapter: dict[str, list[str]] = {}
    for exercise in se.list_exercises(CHAPTERS):
        per_chapter.setdefault(exercise.chapter, []).append(exercise.label)
    chapters = sorted(p.name for p in CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(per_chapter) == chapters, "a chapter without exercises"
    for chapter, labels in per_chapter.items():
        assert 3 <= len(labels) <= 5, f"{chapter} has {len(labels)} exercises"
    checked = {
        chapter.strip("`")
        for chapter, _label, _tier, kind, checker, _time in instructors_rows()
        if "implementation" in kind and "check_" in checker
    }
    assert set(chapters) <= checked, (
        f"chapters with no auto-checked exercise: {sorted(set(chapters) - checked)}"
    )
    intro = (CHAPTERS / "intro.md").read_text()
    assert "at least one checked automatically" in " ".join(intro.split())


def test_makefile_has_a_student_target():
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^student:", text, re.M) and "tools/student_edition.py" in text


# --- plain Markdown, answer cells, library source
# -----------------------------------------------
def myst_notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# Chapter\n\nIntro."),
        new_markdown_cell(
            "```{prf:lemma} The loss is a likelihood\n:label: lem-fx\n\n"
            "$\\mathcal{L} = -\\log \\sigma(\\beta d)$.\n```\n\n"
            "```{prf:proof}\nBy {prf:ref}`lem-fx` and "
            "{cite:p}`rafailov2023dpo,azar2023ipo`.\n```"
        ),
        new_markdown_cell(
            ":::{note}\nA note with $x^2$.\n:::\n\n"
            "```python\n```{exercise} not a directive: inside a code block\n```"
        ),
        new_code_cell(
            "from dpolib.course.viz import show_source\n"
            "from dpolib.losses import dpo_gradient_weight\nimport dpolib"
        ),
        new_code_cell("show_source(dpo_gradient_weight)"),
        new_code_cell("show_source(dpolib.GPT)"),
        new_markdown_cell(
            "````{exercise} The weight\n:label: ex-fx-weight\n:class: core\n\n"
            "Write $\\sigma(\\hat r_l - \\hat r_w)$; see {prf:ref}`lem-fx` and "
            "{ref}`ex-fx-bracket`.\n\n```python\nmy_weight(w, l)\n```\n````"
        ),
        new_markdown_cell("```{solution-start} ex-fx-weight\n:class: dropdown\n```"),
        new_code_cell(
            "def my_weight(w, l):\n    ### BEGIN SOLUTION\n"
            "    return (l - w).sigmoid()\n    ### END SOLUTION"
        ),
        new_code_cell("check_gradient_weight(my_weight)"),
        new_markdown_cell("```{solution-end}\n```"),
        new_markdown_cell(
            "```{exercise} The bracket\n:label: ex-fx-bracket\n:class: warm-up\n\n"
            "Why?\n```\n\n```{solution} ex-fx-bracket\n:class: dropdown\nBecause.\n```"
        ),
        new_markdown_cell(
            "```{exercise} Predict\n:label: ex-fx-predict\n:class: challenge\n\nRun "
            "it.\n```"
        ),
        new_markdown_cell("```{solution-start} ex-fx-predict\n```\nIt moves."),
        new_code_cell("print('SECRET_EXPERIMENT')"),
        new_markdown_cell("```{solution-end}\n```\n\n## References\n\nThe end."),
    ]
    return new_notebook(cells=cells)


def test_directives_become_plain_markdown():
    nb = se.student_notebook(myst_notebook(), "02_fx.ipynb")
    md = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "**Lemma (The loss is a likelihood).**" in md
    assert "$\\mathcal{L} = -\\log \\sigma(\\beta d)$." in md  # math intact
    assert "*Proof.*" in md and "By Lemma (The loss is a likelihood) and" in md
    assert "(rafailov2023dpo; azar2023ipo)" in md
    assert "> **Note.**" in md and "> A note with $x^2$." in md
    assert "### Exercise 2.1 (core): The weight" in md
    assert "### Exercise 2.2 (warm-up): The bracket" in md
    assert "### Exercise 2.3 (challenge): Predict" in md
    assert "see Lemma (The loss is a likelihood) and Exercise 2.2." in md
    # a code block is copied as it is, also when it looks like a directive
    assert "```python\n```{exercise} not a directive: inside a code block\n```" in md
    assert "```python\nmy_weight(w, l)\n```" in md
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        outside_code = re.sub(r"```python\n.*?\n```", "", cell.source, flags=re.S)
        assert not re.search(r"^\s*(```|:::)\s*\{", outside_code, re.M), cell.source
        assert not re.search(r"^\s*:(label|class):", cell.source, re.M), cell.source
        assert not re.search(r"\{[\w:-]+\}`", cell.source), cell.source


def test_every_exercise_gets_an_answer_cell():
    nb, roles = se.student_cells(myst_notebook(), "02_fx.ipynb")
    got = [
        (r.kind, r.label, c.cell_type) for c, r in zip(nb.cells, roles) if r is not None
    ]
    assert got == [
        ("hidden-source", "ex-fx-weight", "markdown"),
        ("statement", "ex-fx-weight", "markdown"),
        ("stub", "ex-fx-weight", "code"),
        ("check", "ex-fx-weight", "code"),
        # the implementation's solution has no text and runs nothing else: no more cells
        ("statement", "ex-fx-bracket", "markdown"),
        ("answer", "ex-fx-bracket", "markdown"),  # a written solution: a written answer
        ("statement", "ex-fx-predict", "markdown"),
        ("work", "ex-fx-predict", "code"),  # its solution ran code: a code cell too
        ("answer", "ex-fx-predict", "markdown"),
    ]
    sources = [c.source for c in nb.cells]
    # the answers come before the chapter's text that shares the solution's last cell
    assert sources.index("## References\n\nThe end.") > sources.index(
        "**Your answer to Exercise 2.3.** *Your answer here.*"
    )
    assert "SECRET_EXPERIMENT" not in "\n".join(sources)
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids)
    # the cells the tool adds get the same ids on every run (the fixture's own ids are
    # random)
    again = [c.id for c in se.student_notebook(myst_notebook(), "02_fx.ipynb").cells]
    assert [i for i in ids if i.startswith("student-")] == [
        i for i in again if i.startswith("student-")
    ]
    nbformat.validate(nb)


def test_library_source_that_gives_an_exercise_away_is_hidden():
    nb = se.student_notebook(myst_notebook(), "02_fx.ipynb")
    sources = [c.source for c in nb.cells]
    assert "show_source(dpo_gradient_weight)" not in sources
    note = next(s for s in sources if "dpo_gradient_weight`" in s)
    assert "Exercise 2.1 asks you to write it" in note
    assert "show_source(dpolib.GPT)" in sources  # not what any exercise asks for


# --- the real chapters: readable, answerable, nothing given away
# --------------------------------
@pytest.mark.skipif(not REAL, reason="no chapter notebooks yet")
def test_real_chapters_read_as_plain_markdown_with_answer_cells():
    from dpolib.course.exercises import CHECKERS

    for path in REAL:
        nb = nbformat.read(path, as_version=4)
        student, roles = se.student_cells(nb, path.name)
        for cell in student.cells:
            if cell.cell_type != "markdown":
                continue
            lines, i = cell.source.split("\n"), 0
            while i < len(lines):  # outside ordinary code blocks
                fence = re.match(r"^\s*(`{3,}|~{3,})(?!\s*\{)", lines[i])
                if fence:
                    i = se._block_end(lines, i, fence.group(1))
                    continue
                assert not re.match(r"^\s*(`{3,}|:{3,})\s*\{", lines[i]), (
                    path.name,
                    lines[i],
                )
                assert not re.match(r"^\s*:(label|class):", lines[i]), (
                    path.name,
                    lines[i],
                )
                assert not re.search(r"\{[\w:+-]+\}`", lines[i]), (path.name, lines[i])
                i += 1
        labels = [
            e.label for e in se.list_exercises(path.parent) if e.chapter == path.name
        ]
        answered = {r.label for r in roles if r and r.kind in ("stub", "answer")}
        assert set(labels) <= answered, (path.name, sorted(set(labels) - answered))
        headings = [
            c.source for c in student.cells if c.source.startswith("### Exercise")
        ]
        assert len(headings) == len(labels)
        # no cell prints the source of what a checker of the chapter compares with
        code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
        for name in set(re.findall(r"\b(check_\w+)\(", code)) & set(CHECKERS):
            for ref in CHECKERS[name](lambda *a: None, quiet=True).references:
                short = ref.rsplit(".", 1)[-1]
                assert not re.search(
                    rf"(show_source|getsource)\(\s*[\w.]*\b{short}\s*\)", code
                ), (path.name, name, ref)


# --- the instructors page: assignment sets and rubrics
# ------------------------------------------
TIER_POINTS = {
    "warm-up": 1,
    "core": 2,
    "challenge": 3,
}  # what tools/nbgrader_release.py gives


@pytest.mark.skipif(
    not (CHAPTERS / "instructors.md").exists(), reason="no instructors page yet"
)
def test_suggested_assignments_add_up():
    text = (CHAPTERS / "instructors.md").read_text()
    section = text[text.index("## Suggested assignments") :]
    section = section[: section.index("\n## ", 1)]
    minutes = {row[1].strip("`"): int(row[5].split()[0]) for row in instructors_rows()}
    sets = re.findall(
        r"^\*\*(.+?)\*\* \(total (\d+) min\):(.*?)(?=\n\n|\Z)", section, re.M | re.S
    )
    assert len(sets) >= 2, "a one-week and a three-week module"
    for title, total, body in sets:
        labels = re.findall(r"`(ex-[\w-]+)`", body)
        assert labels and len(set(labels)) == len(labels), title
        assert sum(minutes[label] for label in labels) == int(total), (
            f"{title}: the table's times add up to "
            f"{sum(minutes[label] for label in labels)} min, not {total}"
        )


@pytest.mark.skipif(not REAL, reason="no chapter notebooks yet")
def test_every_written_answer_has_a_rubric():
    """Each exercise whose student edition has a Markdown answer cell has one rubric
    line, worth the points nbgrader gives that cell.
    """
    text = (CHAPTERS / "instructors.md").read_text()
    section = text[text.index("## Rubrics for the written answers") :]
    rubric = dict(re.findall(r"^- `(ex-[\w-]+)` \((\d+) pt\): \S", section, re.M))
    written = {}
    for path in REAL:
        _, roles = se.student_cells(nbformat.read(path, as_version=4), path.name)
        written |= {r.label: r.tier for r in roles if r and r.kind == "answer"}
    assert sorted(set(written) - set(rubric)) == [], "rubric lines missing"
    assert sorted(set(rubric) - set(written)) == [], "rubrics for exercises without one"
    for label, tier in written.items():
        assert int(rubric[label]) == TIER_POINTS[tier], (label, tier, rubric[label])

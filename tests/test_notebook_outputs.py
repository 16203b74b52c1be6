"""Stored notebook outputs are real: a chapter saved without outputs, or with outputs
from another version of the code, must fail `make test`.

nbval (run by `make nbval` with tests/nbval_sanitize.cfg) compares stored with fresh
outputs, but only for cells that have an execution count: a notebook saved without
outputs passes it. So two layers are tested here:
- every chapter notebook git knows has every code cell executed, in order, 1..n, with no
  error output (what `make execute` produces);
- nbval with the project's sanitize file accepts a faithfully stored notebook (including
  a kernel-free slider, whose ids and frames vary) and rejects one whose outputs came
  from a different version of the code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"


def stored_output_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Why a notebook's stored outputs are not those of one clean top-to-bottom run ([]
    if they are)."""
    problems = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells, start=1):
        count = cell.get("execution_count")
        if count is None:
            problems.append(
                f"code cell {i} was never executed (no execution_count): run `make "
                "execute`"
            )
        elif count != i:
            problems.append(
                f"code cell {i} has execution_count {count}, expected {i}: run `make "
                "execute`"
            )
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(
                    f"code cell {i} stores an error ({out.get('ename')}): fix it, then "
                    "`make execute`"
                )
    return problems


def chapter_notebooks() -> list[Path]:
    """Chapter notebooks git knows about (committed or staged); every one if git is
    unavailable."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--", "chapters/*.ipynb"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return sorted(ROOT / p for p in listed if (ROOT / p).is_file())
    except (OSError, subprocess.CalledProcessError):
        return sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.name)
def test_chapter_outputs_come_from_one_clean_run(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert [c for c in nb.cells if c.cell_type == "code"], (
        f"{path.name} has no code cells"
    )
    assert stored_output_problems(nb) == []


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.name)
def test_chapter_first_code_cell_installs_dpolib_only_in_colab(path: Path):
    """The Colab launch button works because the first code cell installs dpolib there
    (a no-op elsewhere)."""
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert 'if "google.colab" in sys.modules:' in first.source, (
        "first code cell: the Colab-only install"
    )
    assert (
        "pip install" in first.source
        and "dpolib @ git+https://github.com/dpo-course/dpo-course" in first.source
    )
    assert "hide-input" in first.metadata.get("tags", []), (
        "tag the install cell hide-input"
    )
    assert first.get("outputs") == [], "outside Colab the install cell prints nothing"


def _code(source: str, outputs=(), count=None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(textwrap.dedent(source).strip())
    cell.outputs = list(outputs)
    cell.execution_count = count
    return cell


def test_output_check_flags_unexecuted_reordered_and_failed_cells():
    clean = nbformat.v4.new_notebook(cells=[_code("1", count=1), _code("2", count=2)])
    assert stored_output_problems(clean) == []
    saved_without_outputs = nbformat.v4.new_notebook(cells=[_code("1"), _code("2")])
    assert len(stored_output_problems(saved_without_outputs)) == 2
    out_of_order = nbformat.v4.new_notebook(
        cells=[_code("1", count=2), _code("2", count=1)]
    )
    assert len(stored_output_problems(out_of_order)) == 2
    error = nbformat.v4.new_output(
        "error", ename="ValueError", evalue="x", traceback=[]
    )
    failed = nbformat.v4.new_notebook(cells=[_code("1", outputs=[error], count=1)])
    assert "ValueError" in stored_output_problems(failed)[0]


# --- nbval end to end on a throwaway notebook and library -----------------------------

LIBRARY_V1 = "ANSWER = 41\n\ndef describe():\n    return f'answer={ANSWER}'\n"
LIBRARY_V2 = LIBRARY_V1.replace("41", "42")

CELLS = [
    "import tinylib\nprint(tinylib.describe())",
    "tinylib.ANSWER * 2",
    # a kernel-free slider: random ids and embedded PNG frames, which the sanitize file
    # must absorb
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from dpolib.course.viz import kernel_free_slider
    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=40)
    (line,) = ax.plot([0, 1], [0, 0])
    kernel_free_slider(fig, lambda b: line.set_ydata([0, b]), [0.5, 1.0, 2.0])
    """,
]


def _run_nbval(workdir: Path, notebook: Path) -> subprocess.CompletedProcess:
    (workdir / "pytest.ini").write_text(
        "[pytest]\n"
    )  # isolate from the project's pytest settings
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(workdir),
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(SANITIZE),
            str(notebook),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def executed_notebook(tmp_path_factory) -> tuple[Path, Path]:
    """A notebook whose outputs were stored by a real run against tinylib v1 (as `make
    execute` does)."""
    from nbclient import NotebookClient

    workdir = tmp_path_factory.mktemp("nbval")
    (workdir / "tinylib.py").write_text(LIBRARY_V1)
    nb = nbformat.v4.new_notebook(cells=[_code(src) for src in CELLS])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    sys.path.insert(0, str(workdir))
    old_pythonpath = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(workdir), old_pythonpath or ""])
    try:
        NotebookClient(
            nb,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(workdir)}},
        ).execute()
    finally:
        sys.path.remove(str(workdir))
        if old_pythonpath is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old_pythonpath
    path = workdir / "chapter.ipynb"
    nbformat.write(nb, path)
    assert stored_output_problems(nb) == []
    assert "answer=41" in path.read_text()
    return workdir, path


def test_nbval_accepts_faithfully_stored_outputs(executed_notebook):
    workdir, path = executed_notebook
    (workdir / "tinylib.py").write_text(LIBRARY_V1)
    result = _run_nbval(workdir, path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout


def test_nbval_rejects_outputs_from_another_code_version(executed_notebook):
    workdir, path = executed_notebook
    (workdir / "tinylib.py").write_text(
        LIBRARY_V2
    )  # the library changed; outputs were not regenerated
    try:
        result = _run_nbval(workdir, path)
    finally:
        (workdir / "tinylib.py").write_text(LIBRARY_V1)
    assert result.returncode != 0
    assert "2 failed" in result.stdout, result.stdout[-3000:]
    assert (
        "answer=41" in result.stdout and "answer=42" in result.stdout
    )  # the report shows the change


def test_notebook_saved_without_outputs_passes_nbval_but_not_the_output_check(
    executed_notebook,
):
    """Why the output check exists: nbval alone cannot see that nothing was stored."""
    workdir, path = executed_notebook
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.outputs, cell.execution_count = [], None
    stripped = workdir / "stripped.ipynb"
    nbformat.write(nb, stripped)
    assert _run_nbval(workdir, stripped).returncode == 0
    assert len(stored_output_problems(nb)) == len(CELLS)


# A cell whose output legitimately varies between machines may be marked for nbval to
# ignore,
# but such cells must stay rare: each one is a place where the book's stored numbers are
# not
# checked. Live-widget cells (tagged remove-output: hidden on the website, their plots
# leak as
# extra outputs) and cells nbval skips (real-model cells that cannot run in CI) are
# counted apart.
MAX_IGNORED_SHARE = 0.05


def ignored_output_cells(nb: nbformat.NotebookNode) -> tuple[int, int]:
    """(code cells whose output nbval ignores for variance, code cells) in one
    notebook."""
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    ignored = 0
    for cell in code:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & {"remove-output", "nbval-skip"}:
            continue
        if "nbval-ignore-output" in tags or "# NBVAL_IGNORE_OUTPUT" in cell.source:
            ignored += 1
    return ignored, len(code)


def test_few_cells_ignore_their_output():
    counts = {
        p.name: ignored_output_cells(nbformat.read(p, as_version=4))
        for p in chapter_notebooks()
    }
    ignored = sum(i for i, _ in counts.values())
    total = sum(n for _, n in counts.values())
    assert total > 0
    assert ignored <= MAX_IGNORED_SHARE * total, (
        f"{ignored} of {total} code cells ignore their output under nbval "
        f"(at most {MAX_IGNORED_SHARE:.0%}): print what is stable across machines "
        "instead; "
        f"per chapter: { {k: v[0] for k, v in counts.items() if v[0]} }"
    )


def test_landing_page_reading_times_match_the_chapters():
    """The landing page's time table gives each chapter the reading time that chapter
    states in its first cell ("Reading about N minutes"), in the order of the book."""
    import re

    rows = re.findall(
        r"^\| [^|]+ \| [^|]+ \| (\d+) min \|$",
        (ROOT / "chapters" / "intro.md").read_text(),
        re.M,
    )
    stated = []
    for path in chapter_notebooks():
        first = nbformat.read(path, as_version=4).cells[0].source
        m = re.search(r"Reading about (\d+) minutes", first)
        assert m, f"{path.name}: the first cell states no reading time"
        stated.append(m.group(1))
    assert rows == stated

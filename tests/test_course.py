"""The course is code: every chapter exists, has the same setup cell and sections, reads no network, was run."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import nbformat
import pytest

from camlab.cli import main
from camlab.course import (CHAPTERS, DISTRIBUTION, INSTALL_SOURCE, REQUIRED_SECTIONS, execute_notebook,
                           notebooks_dir, setup_cell)
from camlab.course.badges import sync_notebook, sync_readme, with_badge
from camlab.course.colab import BADGE_IMAGE, badge, colab_url, repository
from camlab.exercises import ExerciseFailed, run_check

ROOT = notebooks_dir().parent

NOTEBOOKS = {path.stem: path for path in sorted(notebooks_dir().glob("*.ipynb"))}
NETWORK = re.compile(r"urlopen|requests\.|urllib|wget|curl |torch\.hub|hf_hub|download=True|load_state_dict_from_url"
                     r"|pretrained=True|https?://")


def cells(stem):
    return json.loads(NOTEBOOKS[stem].read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def test_every_chapter_exists():
    assert set(CHAPTERS) <= set(NOTEBOOKS), f"missing: {sorted(set(CHAPTERS) - set(NOTEBOOKS))}"


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_starts_with_the_shared_setup_cell(stem):
    first_code = next(c for c in cells(stem) if c["cell_type"] == "code")
    assert source(first_code) == setup_cell()


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_has_the_current_colab_badge_and_setup_cell(stem):
    notebook = nbformat.read(NOTEBOOKS[stem], as_version=4)
    assert not sync_notebook(notebook, stem), f"{stem} is out of date with INSTALL_SOURCE: run `camlab course badges`"


def test_readme_course_table_opens_every_chapter_in_colab():
    """Each row's chapter link and Colab badge open the students' version; only the link named "worked solutions"
    opens the instructor's notebook."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert sync_readme(readme) == readme, "README badges are out of date: run `camlab course badges`"
    rows = [line for line in readme.splitlines() if line.startswith("| [") and "](notebooks/" in line]
    for stem in CHAPTERS:
        assert any(f"(notebooks/student/{stem}.ipynb) {badge(stem)} |" in row for row in rows), f"no badge for {stem}"


def test_install_source_is_this_distribution_at_the_tag_of_this_version():
    """pip refuses a git requirement whose name differs from the checkout's, and the badges open the notebooks of
    the tag, so the setting must name pyproject's distribution and the tag v<version>."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    name = re.search(r'^name = "([^"]+)"', pyproject, re.M)[1]
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M)[1]
    assert name == DISTRIBUTION and INSTALL_SOURCE.startswith(f"{name} @ git+https://github.com/")
    assert repository()[2] == f"v{version}"


def test_the_setting_is_read_without_importing_camlab_or_torch():
    code = ("import runpy, sys; s = runpy.run_path('camlab/course/colab.py'); "
            "assert not {'torch', 'camlab'} & set(sys.modules), sorted(sys.modules); print(s['INSTALL_SOURCE'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == INSTALL_SOURCE


def test_badge_opens_the_students_version_and_links_the_worked_solutions_apart():
    source = "torch-camlab @ git+https://github.com/someone/camlab-fork.git@v2.0"
    assert repository(source) == ("someone", "camlab-fork", "v2.0")
    assert colab_url("01_cam", source) == \
        "https://colab.research.google.com/github/someone/camlab-fork/blob/v2.0/notebooks/01_cam.ipynb"
    students = "https://colab.research.google.com/github/someone/camlab-fork/blob/v2.0/notebooks/student/01_cam.ipynb"
    assert colab_url("01_cam", source, "notebooks/student") == students
    assert badge("01_cam", source) == ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                                       f"({students}) · [worked solutions (self-study)]({colab_url('01_cam', source)})")


@pytest.mark.parametrize("source", ["torch-camlab==0.1.0", "torch-camlab @ git+https://gitlab.com/a/b@v1",
                                    "torch-camlab @ git+https://github.com/a/b"])
def test_a_source_without_a_github_repository_and_tag_is_refused_with_the_expected_form(source):
    with pytest.raises(ValueError, match=r"names no GitHub repository and tag.*git\+https://github.com/OWNER/REPO@TAG"):
        repository(source)


def test_badge_line_is_inserted_after_the_title_once_and_then_replaced():
    cell = "# 01 · CAM\n\n**Why:** because."
    inserted = with_badge(cell, badge("01_cam"))
    assert inserted == f"# 01 · CAM\n\n{badge('01_cam')}\n\n**Why:** because."
    stale = f"# 01 · CAM\n\n[![Open In Colab]({BADGE_IMAGE})](https://old-link)\n\n**Why:** because."
    assert with_badge(stale, badge("01_cam")) == inserted
    assert with_badge(inserted, badge("01_cam")) == inserted


def test_readme_sync_touches_only_the_course_rows_and_is_idempotent():
    text = ("intro [00](notebooks/00_tour.ipynb) stays\n"
            "| [00 · Tour](notebooks/00_tour.ipynb) | topics | 10 |\n"
            "| [02 · Grad-CAM](notebooks/02_gradcam.ipynb) [![Open In Colab](old.svg)](old-link) | maths | 30 * |\n"
            "| 1 CAM review | 01 |")
    synced = sync_readme(text)
    assert synced.splitlines() == [
        "intro [00](notebooks/00_tour.ipynb) stays",
        f"| [00 · Tour](notebooks/student/00_tour.ipynb) {badge('00_tour')} | topics | 10 |",
        f"| [02 · Grad-CAM](notebooks/student/02_gradcam.ipynb) {badge('02_gradcam')} | maths | 30 * |",
        "| 1 CAM review | 01 |"]
    assert sync_readme(synced) == synced


def test_badges_command_checks_then_writes_a_stale_checkout(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    notebook = nbformat.read(NOTEBOOKS["00_tour"], as_version=4)
    notebook.cells[0].source = "# 00 · Tour\n\nno badge yet"
    nbformat.write(notebook, tmp_path / "notebooks" / "00_tour.ipynb")
    (tmp_path / "README.md").write_text("| [00 · Tour](notebooks/00_tour.ipynb) | topics | 10 |\n")

    assert main(["course", "badges", "--check", "--root", str(tmp_path)]) == 1
    assert "00_tour.ipynb" in capsys.readouterr().err
    assert main(["course", "badges", "--root", str(tmp_path)]) == 0
    assert main(["course", "badges", "--check", "--root", str(tmp_path)]) == 0
    written = nbformat.read(tmp_path / "notebooks" / "00_tour.ipynb", as_version=4)
    assert written.cells[0].source == f"# 00 · Tour\n\n{badge('00_tour')}\n\nno badge yet"
    assert badge("00_tour") in (tmp_path / "README.md").read_text()


def test_badges_command_without_notebooks_says_what_root_it_needs(tmp_path, capsys):
    assert main(["course", "badges", "--root", str(tmp_path)]) == 1
    assert "has no notebooks/ folder" in capsys.readouterr().err


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_has_goals_summary_exercises_and_reading(stem):
    headings = [line for c in cells(stem) if c["cell_type"] == "markdown" for line in source(c).splitlines()
                if line.startswith("#")]
    for section in REQUIRED_SECTIONS:
        assert any(section.lower() in h.lower() for h in headings), f"{stem} has no '{section}' section"


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_reads_no_network(stem):
    code = [source(c) for c in cells(stem) if c["cell_type"] == "code"][1:]  # the setup cell may name the repo
    offenders = [line for block in code for line in block.splitlines() if NETWORK.search(line)]
    assert not offenders, offenders


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_was_run_top_to_bottom_without_errors_or_stderr(stem):
    code = [c for c in cells(stem) if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert all(isinstance(n, int) for n in counts), "cells without a stored run"
    assert counts == list(range(1, len(code) + 1)), "execution counts out of order"
    for cell in code:
        for output in cell["outputs"]:
            assert output["output_type"] != "error"
            assert output.get("name") != "stderr", f"stderr in: {source(cell)[:80]}"


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_code_exercises_have_a_marked_solution_and_a_check(stem):
    code = [source(c) for c in cells(stem) if c["cell_type"] == "code"]
    solutions = [i for i, text in enumerate(code) if "### BEGIN SOLUTION" in text]
    assert solutions, f"{stem} has no code exercise"
    for i in solutions:
        assert "### END SOLUTION" in code[i]
        assert "camlab.exercises.check_" in code[i + 1] or "exercises.check_" in code[i + 1], \
            f"the cell after solution {i} does not call a check"


def test_a_check_fails_on_a_wrong_answer_and_passes_on_the_right_one(monkeypatch, capsys):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    cases = [((2,), 4), ((3,), 9)]
    assert run_check("square", lambda v: v * v, cases, hint="multiply v by itself")
    wrong = run_check("square", lambda v: v + v, cases, hint="multiply v by itself")
    assert not wrong and "case 2 of 2" in wrong.message and "multiply" in wrong.message
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" in out


def test_strict_mode_turns_a_failed_check_into_an_error(monkeypatch):
    monkeypatch.setenv("CAMLAB_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseFailed):
        run_check("square", lambda v: v + 1, [((2,), 4)], hint="")


def test_execute_notebook_stores_fresh_outputs_in_place(tmp_path):
    """nbclient comes with the test and course extras, so the maintainers' re-run tool works where the tests run."""
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 6 * 7"),
                                                   nbformat.v4.new_code_cell("print(x)")]), path)
    assert execute_notebook(path, timeout=120) > 0
    ran = nbformat.read(path, as_version=4).cells
    assert [cell.execution_count for cell in ran] == [1, 2]
    assert ran[1].outputs[0].text == "42\n"


def test_execute_notebook_refuses_an_error_that_was_only_displayed(tmp_path):
    """A failing ``_repr_html_`` (like a figure that cannot be drawn) leaves the cell's status ok but stores a
    traceback: execute_notebook must say so instead of reporting a clean run."""
    path = tmp_path / "display_error.ipynb"
    source = ("class Broken:\n    def _repr_html_(self):\n        raise ValueError('cannot draw')\n\n"
              "from IPython.display import display\ndisplay(Broken())")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
    with pytest.raises(RuntimeError, match="cell 0 displayed an error.*ValueError: cannot draw"):
        execute_notebook(path, timeout=120)


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_instructors_notes_list_every_graded_item_of_the_chapter_with_its_points(stem):
    """Every graded cell (code check or written answer) appears in INSTRUCTORS.md by its grade id, in the chapter's
    section, on a row that states its points: the rubric cannot drift from the notebook unnoticed."""
    instructor = nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)
    notes = (notebooks_dir().parent / "INSTRUCTORS.md").read_text(encoding="utf-8")
    start = notes.index(f"\n## {stem[:2]} ·")
    section = notes[start:notes.index("\n## ", start + 5)]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    for cell in instructor.cells:
        info = cell.metadata.get("nbgrader", {})
        if not info.get("grade"):
            continue
        grade_id = info["grade_id"].removesuffix("_check")
        assert _points_in_notes(rows, grade_id) == info["points"], (
            f"INSTRUCTORS.md, chapter {stem[:2]}: no row names {grade_id!r} with its {info['points']} points in the "
            "points column")


def _points_in_notes(rows: list[str], grade_id: str):
    """The points INSTRUCTORS.md gives ``grade_id``: the points column of the row naming it, or, for a row of
    written questions named as a range (`ch01-q1`..`q3`, points "3 / 2 / 2"), the question's entry."""
    prefix, _, number = grade_id.rpartition("-q")
    for row in rows:
        columns = [column.strip() for column in row.strip().strip("|").split("|")]
        if len(columns) < 2:
            continue
        points = [int(value) for value in re.findall(r"\d+", columns[1])]
        if f"`{grade_id}`" in columns[0] and len(points) == 1:
            return points[0]
        ranged = re.search(rf"`{re.escape(prefix)}-q(\d+)`\.\.`q(\d+)`", columns[0]) if number else None
        if ranged and int(ranged[1]) <= int(number) <= int(ranged[2]):
            index = int(number) - int(ranged[1])
            return points[index] if index < len(points) else None
    return None

"""``camlab course student``: students get every chapter the way nbgrader's generate_assignment writes it, without a
solution or a hidden test, and an unfinished notebook still runs top to bottom."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

import camlab
import camlab.exercises  # noqa: F401 (the check cells call camlab.exercises.check_*)
from camlab.cli import main
from camlab.course import CHAPTERS, notebooks_dir
from camlab.course.student import without_folded_answers
from camlab.course.student import (BEGIN_HIDDEN, BEGIN_SOLUTION, CODE_STUB, END_SOLUTION, TEXT_STUB, grading_info,
                                   is_check, is_solution, student_notebook)

pytest.importorskip("nbgrader")


def instructor(stem: str):
    return nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)


def nbgrader_student_version(notebook):
    """The same steps with nbgrader's own preprocessors, in generate_assignment's order."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions, LockCells

    notebook, resources = copy.deepcopy(notebook), {}
    for cell in notebook.cells:   # the folded answers: removed by camlab, unknown to nbgrader
        if cell.cell_type == "markdown":
            cell.source = without_folded_answers(cell.source)
    for step in (LockCells(), ClearSolutions(code_stub={"python": CODE_STUB}, enforce_metadata=True), ClearOutput(),
                 ClearHiddenTests(enforce_metadata=True)):
        notebook, resources = step.preprocess(notebook, resources)
    return notebook


@pytest.mark.parametrize("stem", CHAPTERS)
def test_student_version_is_what_nbgraders_preprocessors_write(stem):
    ours, theirs = student_notebook(instructor(stem)), nbgrader_student_version(instructor(stem))
    assert ours.metadata == theirs.metadata
    assert len(ours.cells) == len(theirs.cells)
    for mine, nbgraders in zip(ours.cells, theirs.cells):
        assert mine == nbgraders


def test_nbgraders_generate_assignment_app_agrees_on_a_chapter(tmp_path):
    """The whole nbgrader app (course folder, gradebook, checksums) on chapter 04: same sources, no outputs, same
    locks. nbgrader adds only its checksums to the cells' metadata."""
    source = tmp_path / "source" / "ch04"
    source.mkdir(parents=True)
    original = notebooks_dir() / "04_evaluation.ipynb"
    (source / original.name).write_bytes(original.read_bytes())
    (tmp_path / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(tmp_path)!r}\nc.ClearSolutions.code_stub = "
        f"{{'python': {CODE_STUB!r}}}\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "ch04"], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=300)
    released = nbformat.read(tmp_path / "release" / "ch04" / original.name, as_version=4)
    ours = student_notebook(nbformat.read(original, as_version=4))
    assert [without_folded_answers(cell.source) if cell.cell_type == "markdown" else cell.source
            for cell in released.cells] == [cell.source for cell in ours.cells]
    for theirs, mine in zip(released.cells, ours.cells):
        assert theirs.get("outputs", []) == mine.get("outputs", []) == []
        assert (theirs.metadata.get("deletable"), theirs.metadata.get("editable")) == \
               (mine.metadata.get("deletable"), mine.metadata.get("editable"))


@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_chapter_has_checked_exercises_and_students_see_neither_solutions_nor_hidden_tests(stem):
    notebook = instructor(stem)
    solutions = [cell for cell in notebook.cells if is_solution(cell) and cell.cell_type == "code"]
    checks = {grading_info(cell)["grade_id"]: cell for cell in notebook.cells if is_check(cell)}
    assert solutions and len(checks) == len(solutions)
    for cell in solutions:
        check = checks[f"{grading_info(cell)['grade_id']}_check"]
        assert BEGIN_HIDDEN in check.source and check.metadata["nbgrader"]["points"] > 0
    student = student_notebook(notebook)
    for mine, theirs in zip(notebook.cells, student.cells):
        if is_solution(mine) and mine.cell_type == "markdown":  # a written answer, graded by hand
            assert theirs.source == TEXT_STUB and mine.metadata["nbgrader"]["points"] > 0
        elif is_solution(mine):
            answer = mine.source.split(BEGIN_SOLUTION)[1].split(END_SOLUTION)[0]
            assert not {line.strip() for line in answer.splitlines()} & set(theirs.source.splitlines()) - {""}
            assert "raise NotImplementedError" in theirs.source
    text = nbformat.writes(student)
    assert BEGIN_HIDDEN not in text and BEGIN_SOLUTION not in text and "hidden=[" not in text
    assert all(not cell.get("outputs") for cell in student.cells)


@pytest.mark.parametrize("stem", CHAPTERS)
def test_a_seeded_experiments_hidden_seeds_come_from_the_graders_secret(stem):
    """Every chapter has a check that reruns the student's experiment on other seeds; those seeds are
    ``HIDDEN_SEED + ...``, and the grader sets ``HIDDEN_SEED`` from the instructor's secret and the chapter, so the
    hidden seeds are in no notebook (the instructor's notebook sets ``HIDDEN_SEED = 0`` for reproducible outputs)."""
    notebook = instructor(stem)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert re.search(r"^HIDDEN_SEED = 0\b", code, re.MULTILINE), f"{stem}: no HIDDEN_SEED line next to STUDENT_SEED"
    seeded = [cell.source.split(BEGIN_HIDDEN)[1] for cell in notebook.cells
              if is_check(cell) and BEGIN_HIDDEN in cell.source and "seed=STUDENT_SEED" in cell.source]
    assert seeded, f"{stem}: no check reruns the experiment on hidden seeds"
    for hidden in seeded:
        lists = re.findall(r"hidden=\[([^\]]*)\]", hidden)
        assert lists and all(seeds.startswith("HIDDEN_SEED + ") for seeds in lists), (stem, lists)


@pytest.mark.parametrize("stem", CHAPTERS)
def test_unfinished_exercises_say_not_done_yet_and_do_not_raise(stem, monkeypatch, capsys):
    """Every exercise and check cell of the students' version runs (a student's "Run all"): each check says "not done
    yet" instead of raising."""
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    import numpy as np
    import torch.nn.functional as F
    from scipy import ndimage

    namespace = {"camlab": camlab, "torch": torch, "np": np, "F": F, "ndimage": ndimage, "nn": torch.nn,
                 "STUDENT_SEED": 0}
    cells = student_notebook(instructor(stem)).cells
    for cell in cells:
        if (is_solution(cell) or is_check(cell)) and cell.cell_type == "code":
            exec(compile(cell.source, grading_info(cell)["grade_id"], "exec"), namespace)
            if is_check(cell):
                assert "not done yet" in capsys.readouterr().out


def test_the_students_capstone_notebook_runs_top_to_bottom(tmp_path):
    """Chapter 08 uses the exercises' classes after them: unfinished, they are left out of the table."""
    from nbclient import NotebookClient

    notebook = student_notebook(instructor("08_summary"))
    env = {**os.environ, "CAMLAB_STRICT_CHECKS": "0", "CAMLAB_FAST": "1"}
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    text = nbformat.writes(notebook)
    assert "not done yet" in text and "MyCAM is not done yet: left out of the table" in text


def test_the_command_writes_every_chapter_and_refuses_the_instructors_folder(tmp_path, capsys):
    assert main(["course", "student", str(tmp_path / "out")]) == 0
    assert sorted(path.stem for path in (tmp_path / "out").glob("*.ipynb")) == sorted(CHAPTERS)
    assert main(["course", "student", str(notebooks_dir())]) != 0
    assert "instructor" in capsys.readouterr().err


def test_solution_markers_outside_a_solution_cell_are_a_clear_error():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}")])
    with pytest.raises(ValueError, match="solution: true"):
        student_notebook(notebook)


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_folded_answers_to_the_written_questions_are_only_in_the_instructors_notebook(stem):
    """Folded <details> answers are removed, and the model answers of manually graded written questions (the
    chapters' form of a written answer) are blanked; a chapter may have either or both."""
    instructor = nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)
    student = student_notebook(instructor)
    # a chapter's written answers are folded <details> or (the homework contract) manually graded answer cells
    assert any("<details>" in cell.source or (cell.cell_type == "markdown" and grading_info(cell).get("grade"))
               for cell in instructor.cells)
    assert not any("<details" in cell.source or "</details>" in cell.source for cell in student.cells)
    assert len(student.cells) == len(instructor.cells)
    for given, blanked in zip(instructor.cells, student.cells):
        if given.cell_type == "markdown" and grading_info(given).get("solution"):
            assert blanked.source == TEXT_STUB != given.source


def test_the_students_versions_the_badges_open_are_what_the_release_command_writes():
    """`notebooks/student/` is written by `camlab course badges`; run it after changing a chapter."""
    from camlab.course.badges import sync_student_versions

    stale = sync_student_versions(notebooks_dir().parent, check=True)
    assert stale == [], f"out of date: {[path.name for path in stale]}; run `camlab course badges`"


def test_a_student_version_opened_from_its_badge_holds_no_solution_and_no_hidden_test():
    for path in sorted((notebooks_dir() / "student").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        assert BEGIN_SOLUTION not in text and BEGIN_HIDDEN not in text and "<details>" not in text, path.name
        assert "notebooks/student/" + path.name in text, f"{path.name}: its badge opens another notebook"


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_every_nbgrader_cell_has_the_fields_nbgraders_validator_requires(stem):
    """nbgrader's ``generate_assignment`` rejects the whole notebook when one cell lacks ``locked`` (a written
    answer cell without it did so for chapter 04)."""
    instructor = nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)
    required = {"grade", "solution", "locked", "grade_id", "schema_version"}
    incomplete = [(index, sorted(required - set(cell.metadata["nbgrader"])))
                  for index, cell in enumerate(instructor.cells)
                  if "nbgrader" in cell.metadata and required - set(cell.metadata["nbgrader"])]
    assert not incomplete, f"{stem}: cells whose nbgrader metadata lacks fields: {incomplete}"

"""``camlab course grade``: each submission runs with the instructor's checks (visible and hidden) in its own kernel
and folder; a wrong, unfinished, crashing, looping, flooding or file-deleting submission cannot spoil the others."""
from __future__ import annotations

import copy
import csv
import time

import nbformat
import pytest

from camlab.cli import main
from camlab.course import notebooks_dir
from camlab.course.grading import grade, run_notebook
from camlab.course.student import grading_info, is_check, is_solution, student_notebook

TIMEOUT = 10  # seconds per cell: eve's endless loop costs this much

WRONG_IOU = "def iou(box_a, box_b):  # inclusive upper edges\n    return 0.5"
DAVE_IOU = """import os, shutil
for name in os.listdir("."):  # deletes everything in its working folder
    shutil.rmtree(name, ignore_errors=True) if os.path.isdir(name) else os.remove(name)
print("x" * 5_000_000)        # five megabytes of output
def iou(box_a, box_b):
    raise RuntimeError("boom")"""


def _small_release():
    """Chapter 04's exercises (three code exercises with their instructor check cells) after one import cell."""
    full = nbformat.read(notebooks_dir() / "04_evaluation.ipynb", as_version=4)
    first = min(index for index, cell in enumerate(full.cells) if is_solution(cell))
    release = copy.deepcopy(full)
    imports = "import numpy as np\nfrom scipy import ndimage\nimport torch\nimport camlab\nimport camlab.exercises"
    release.cells = [nbformat.v4.new_code_cell(imports)] + [
        cell for cell in full.cells[first:] if is_solution(cell) or is_check(cell)]
    return release


def _answered(release, **answers):
    """The students' version with some solution cells filled in (by grade_id)."""
    notebook = student_notebook(release)
    for cell in notebook.cells:
        if grading_info(cell).get("grade_id") in answers:
            cell.source = answers[grading_info(cell)["grade_id"]]
    return notebook


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Five students' submissions of the small release, graded once; returns (rows by student, CSV rows, folder,
    seconds)."""
    root = tmp_path_factory.mktemp("course")
    release = _small_release()
    (root / "release").mkdir()
    nbformat.write(release, root / "release" / "04_evaluation.ipynb")
    solution = {grading_info(cell)["grade_id"]: cell.source for cell in release.cells if is_solution(cell)}
    bob = _answered(release, ch04_iou=WRONG_IOU, ch04_localization_box=solution["ch04_localization_box"].replace(
        "np.ones((3, 3))", "None"))                                   # 4-connected segments
    bob.cells = [cell for cell in bob.cells if grading_info(cell).get("grade_id") != "ch04_iou_check"]
    for cell in bob.cells:                                            # he deletes one check and empties the others
        if is_check(cell):
            cell.source = "pass"
    submissions = {
        "alice": release,                                             # the instructor's answers
        "bob": bob,
        "carol": student_notebook(release),                           # nothing done
        "dave": _answered(release, ch04_iou=DAVE_IOU, ch04_localization_box="import os\nos._exit(1)"),
        "eve": _answered(release, ch04_iou="def iou(box_a, box_b):\n    while True:\n        pass",
                         ch04_localization_box=solution["ch04_localization_box"],
                         ch04_pointing_hit=solution["ch04_pointing_hit"]),
    }
    paths = []
    for student, notebook in submissions.items():
        (root / student).mkdir()
        nbformat.write(notebook, root / student / "04_evaluation.ipynb")
        paths.append(root / student / "04_evaluation.ipynb")
    start = time.perf_counter()
    rows = grade(paths, release_dir=root / "release", timeout=TIMEOUT, csv_path=root / "grades.csv")
    seconds = time.perf_counter() - start
    by_student = {}
    for row in rows:
        by_student.setdefault(row.student, {})[row.exercise.removesuffix("_check").removeprefix("ch04_")] = row
    with open(root / "grades.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    print(f"graded 5 submissions of 3 exercises in {seconds:.1f} s")
    return by_student, table, root, seconds


def test_the_instructors_answers_get_full_marks(graded):
    rows = graded[0]["alice"]
    assert [(row.status, row.points, row.max_points) for row in rows.values()] == [("passed", 1.0, 1.0)] * 3


def test_wrong_answers_fail_even_with_the_checks_deleted_or_emptied(graded):
    rows = graded[0]["bob"]
    assert {name: row.status for name, row in rows.items()} == {"iou": "failed", "localization_box": "failed",
                                                                 "pointing_hit": "failed"}
    assert "wrong answer" in rows["iou"].message and "not done yet" in rows["pointing_hit"].message
    assert sum(row.points for row in rows.values()) == 0


def test_unfinished_exercises_fail_as_not_done_yet(graded):
    assert all(row.status == "failed" and "not done yet" in row.message for row in graded[0]["carol"].values())


def test_a_crash_is_an_error_row_and_the_crashing_kernel_stops_only_its_own_notebook(graded):
    rows = graded[0]["dave"]
    assert rows["iou"].status == "failed" and "RuntimeError: boom" in rows["iou"].message
    assert rows["localization_box"].status == rows["pointing_hit"].status == "error"
    assert "not run" in rows["pointing_hit"].message
    root = graded[2]
    assert (root / "dave" / "04_evaluation.ipynb").exists() and (root / "release" / "04_evaluation.ipynb").exists()


def test_an_endless_loop_times_out_and_the_next_exercises_are_still_graded(graded):
    rows = graded[0]["eve"]
    assert rows["iou"].status == "error" and rows["iou"].message.startswith("Timeout")
    assert rows["localization_box"].status == rows["pointing_hit"].status == "passed"


def test_the_csv_has_one_row_per_student_and_exercise(graded):
    table = graded[1]
    assert len(table) == 15 and list(table[0]) == ["student", "notebook", "exercise", "status", "points",
                                                   "max_points", "message"]
    assert {row["student"] for row in table} == {"alice", "bob", "carol", "dave", "eve"}


def test_output_beyond_the_cap_is_dropped(tmp_path):
    flood = nbformat.v4.new_code_cell("for _ in range(2000):\n    print('y' * 1000)")
    notebook = nbformat.v4.new_notebook(cells=[flood, nbformat.v4.new_code_cell("print('after')")])
    replies = run_notebook(notebook, tmp_path, timeout=60, max_output=10_000)
    assert [reply["status"] for reply in replies.values()] == ["ok", "ok"]
    stored = sum(len(output.get("text", "")) for output in notebook.cells[0].outputs)
    assert stored < 20_000 and "dropped by the grader" in notebook.cells[0].outputs[-1]["text"]
    assert notebook.cells[1].outputs[0]["text"] == "after\n"


def test_a_real_chapter_gets_full_marks(tmp_path, capsys):
    """Chapter 06 as the instructor wrote it, graded against the course's own release."""
    submission = tmp_path / "teacher" / "06_beyond_classification.ipynb"
    submission.parent.mkdir()
    submission.write_bytes((notebooks_dir() / submission.name).read_bytes())
    assert main(["course", "grade", str(submission), "--timeout", "120", "--csv", str(tmp_path / "g.csv")]) == 0
    with open(tmp_path / "g.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(row["status"] == "passed" and row["points"] == row["max_points"] for row in rows)
    assert "teacher" in capsys.readouterr().out


def test_bad_submissions_are_clear_errors(tmp_path, capsys):
    assert main(["course", "grade", str(tmp_path / "missing" / "01_cam.ipynb")]) == 1
    assert "no such submission" in capsys.readouterr().err
    (tmp_path / "homework.ipynb").write_text("{}")
    assert main(["course", "grade", str(tmp_path / "homework.ipynb")]) == 1
    assert "01_cam" in capsys.readouterr().err


def test_an_unreadable_notebook_gets_error_rows(tmp_path):
    broken = tmp_path / "zoe_01_cam.ipynb"
    broken.write_text("not json")
    rows = grade([broken])
    assert len(rows) == 3 and {row.status for row in rows} == {"error"} and rows[0].student == "zoe"
    assert "not a readable notebook" in rows[0].message

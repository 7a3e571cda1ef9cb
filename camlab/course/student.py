"""``camlab course student OUT_DIR``: the students' version of every chapter, as nbgrader's ``generate_assignment``
writes it (its ``ClearSolutions``, ``ClearHiddenTests`` and ``ClearOutput`` steps; a test checks that both agree).

In the instructor's notebooks each code exercise is two cells with nbgrader metadata:

- a *solution cell* (``solution: true``, ``grade_id`` ``chNN_name``) whose answer sits between ``### BEGIN SOLUTION``
  and ``### END SOLUTION``; students get :data:`CODE_STUB` there, which raises ``NotImplementedError``;
- a *check cell* (an autograded test: ``grade: true``, ``locked: true``, ``points``, ``grade_id`` ``chNN_name_check``)
  that runs ``camlab.exercises.check_*`` on visible worked examples and, between ``### BEGIN HIDDEN TESTS`` and
  ``### END HIDDEN TESTS``, on hidden ones; students get the cell without the hidden part.

An unfinished exercise's check prints "not done yet" instead of failing, so a student notebook runs top to bottom.
Folded answers (Markdown ``<details>...</details>`` blocks) are removed too: answers to the written questions live
only in the instructor's notebooks. ``notebooks/student/`` holds the students' versions that the Colab badges open
(``camlab course student notebooks/student``; a test keeps them equal to what this module writes)."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
#: what replaces a solution in a code cell (nbgrader's ``ClearSolutions.code_stub`` for python, set to the same)
CODE_STUB = '# YOUR CODE HERE (the exercise above says what to return)\nraise NotImplementedError("not done yet")'
#: what replaces a solution in a Markdown cell (nbgrader's default ``ClearSolutions.text_stub``)
TEXT_STUB = "YOUR ANSWER HERE"
#: a folded answer in a Markdown cell (removed from the students' versions)
DETAILS = re.compile(r"\n*<details>.*?</details>\n*", re.DOTALL)


def grading_info(cell) -> dict:
    """The cell's nbgrader metadata (empty for a cell nbgrader does not know)."""
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def is_solution(cell) -> bool:
    return bool(grading_info(cell).get("solution"))


def is_check(cell) -> bool:
    """An autograded test cell: graded, not a solution."""
    info = grading_info(cell)
    return bool(info.get("grade")) and not info.get("solution")


def replace_region(source: str, begin: str, end: str, stub: str | None) -> tuple[str, bool]:
    """``source`` with each ``begin``..``end`` block (marker lines included) replaced by ``stub`` indented like the
    ``begin`` line, or removed when ``stub`` is None; and whether a block was found (nbgrader's rules)."""
    lines, inside, found = [], False, False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise ValueError(f"nested {begin!r} in:\n{source}")
            inside, found = True, True
            indent = line[:len(line) - len(line.lstrip())]
            lines += [indent + stub_line for stub_line in stub.split("\n")] if stub is not None else []
        elif end in line:
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ValueError(f"{begin!r} without {end!r} in:\n{source}")
    return "\n".join(lines), found


def without_folded_answers(markdown: str) -> str:
    """``markdown`` without its ``<details>...</details>`` blocks (the folded answers), blank lines tidied."""
    return DETAILS.sub("\n\n", markdown).strip("\n") if "<details>" in markdown else markdown


def student_cell(cell):
    """One cell as students get it: solution replaced by the stub, hidden tests removed, outputs cleared; exercise
    cells cannot be deleted and check cells cannot be edited in Jupyter (nbgrader's ``LockCells``)."""
    cell = copy.deepcopy(cell)
    stub = CODE_STUB if cell["cell_type"] == "code" else TEXT_STUB
    cell["source"], replaced = replace_region(cell["source"], BEGIN_SOLUTION, END_SOLUTION, stub)
    if replaced and not is_solution(cell):
        raise ValueError(f"a {BEGIN_SOLUTION!r} region in a cell without nbgrader `solution: true` metadata:\n"
                         f"{cell['source']}")
    if is_solution(cell) and not replaced:
        cell["source"] = stub
    cell["source"], removed = replace_region(cell["source"], BEGIN_HIDDEN, END_HIDDEN, None)
    if removed and not is_check(cell):
        raise ValueError(f"hidden tests in a cell that is not an nbgrader test cell (`grade: true`):\n"
                         f"{cell['source']}")
    if cell["cell_type"] == "markdown":
        cell["source"] = without_folded_answers(cell["source"])
    if cell["cell_type"] == "code":
        cell["outputs"], cell["execution_count"] = [], None
        for field in ("collapsed", "scrolled"):
            cell["metadata"].pop(field, None)
    info = grading_info(cell)
    if info.get("solution") or info.get("grade") or info.get("locked"):  # nbgrader's LockCells
        cell["metadata"]["deletable"] = False
        if not info.get("solution"):
            cell["metadata"]["editable"] = False
    return cell


def student_notebook(notebook):
    """The students' version of an instructor notebook (a new notebook; ``notebook`` is not changed)."""
    result = copy.deepcopy(notebook)
    result.cells = [student_cell(cell) for cell in notebook.cells]
    result.metadata.pop("celltoolbar", None)
    return result


def with_seed(notebook, seed: int):
    """``notebook`` with its instructor line ``STUDENT_SEED = 0`` set to ``seed`` (a new notebook)."""
    from camlab.course.submissions import SEED_LINE

    result = copy.deepcopy(notebook)
    for cell in result.cells:
        if cell["cell_type"] == "code":
            cell["source"] = SEED_LINE.sub(f"STUDENT_SEED = {int(seed)}", cell["source"])
    return result


def write_student_versions(out_dir: str | Path, notebooks: list[str | Path] | None = None,
                           roster: str | Path | None = None, secret_file: str | Path | None = None) -> list[Path]:
    """Write the students' version of ``notebooks`` (default: every chapter) into ``out_dir``, or with a roster and
    secret into ``out_dir/<student>/`` with each student's seed (:mod:`camlab.course.seeds`); return the paths."""
    import nbformat

    from camlab.course import CHAPTERS, notebooks_dir
    from camlab.course.seeds import seeds

    sources = [Path(path) for path in notebooks] if notebooks else [notebooks_dir() / f"{stem}.ipynb"
                                                                    for stem in CHAPTERS]
    out_dir = Path(out_dir)
    for source in sources:
        if source.resolve().parent == out_dir.resolve():
            raise ValueError(f"{out_dir} holds the instructor's notebooks: choose another folder")
    per_student = seeds(roster, secret_file) if roster else {"": None}
    written = []
    for source in sources:
        version = student_notebook(nbformat.read(source, as_version=4))
        for student, seed in per_student.items():
            folder = out_dir / student if student else out_dir
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(with_seed(version, seed) if seed is not None else version, folder / source.name)
            written.append(folder / source.name)
    return written


def run_check_cell(exercise: str, answer, hidden: bool = True, notebook: str | Path | None = None,
                   hidden_seed: int = 0) -> bool:
    """Run the instructor's check cell of ``exercise`` (a solution ``grade_id`` such as ``ch01_cam``) with
    ``answer`` bound to the solution's name, in a namespace holding ``camlab``, ``torch``, ``numpy as np``,
    ``STUDENT_SEED = 0`` (the per-student seed a check may use) and ``HIDDEN_SEED = hidden_seed`` (the grader's seed
    of the hidden cases; 0 as in the instructor's notebook): its
    hidden tests, or (``hidden=False``) its visible check; True when it passes. ``notebook``: the instructor notebook
    (default: the chapter ``chNN`` names). The tests use it to show that both parts fail plausible wrong answers."""
    import re

    import nbformat
    import numpy
    import torch

    import camlab
    import camlab.exercises
    from camlab.course import CHAPTERS, notebooks_dir

    if notebook is None:
        stems = [stem for stem in CHAPTERS if exercise.startswith(f"ch{stem[:2]}_")]
        if not stems:
            raise ValueError(f"{exercise!r} names no chapter: it must start with chNN_ (NN one of "
                             f"{', '.join(stem[:2] for stem in CHAPTERS)})")
        notebook = notebooks_dir() / f"{stems[0]}.ipynb"
    cells = {grading_info(cell).get("grade_id"): cell for cell in nbformat.read(notebook, as_version=4).cells}
    if exercise not in cells or f"{exercise}_check" not in cells:
        raise ValueError(f"{notebook} has no exercise {exercise!r} with a check cell {exercise}_check")
    name = re.search(r"^(?:def|class)\s+(\w+)", cells[exercise]["source"], re.MULTILINE).group(1)
    source = cells[f"{exercise}_check"]["source"]
    if hidden:
        start, end = source.index(BEGIN_HIDDEN), source.index(END_HIDDEN)
        code = source[start + len(BEGIN_HIDDEN):end]
    else:
        code = replace_region(source, BEGIN_HIDDEN, END_HIDDEN, None)[0].split("\nif result:")[0]
    namespace = {"camlab": camlab, "torch": torch, "np": numpy, "STUDENT_SEED": 0, "HIDDEN_SEED": int(hidden_seed),
                 name: answer}
    previous = os.environ.get("CAMLAB_STRICT_CHECKS")
    os.environ["CAMLAB_STRICT_CHECKS"] = "1"
    try:
        exec(compile(code, f"<{exercise}_check>", "exec"), namespace)
    except camlab.exercises.ExerciseFailed:
        return False
    finally:
        if previous is None:
            del os.environ["CAMLAB_STRICT_CHECKS"]
        else:
            os.environ["CAMLAB_STRICT_CHECKS"] = previous
    return True

"""What a submission is, before anything of it runs: whose it is, which chapter, whether it is a notebook the
grader can use, and the program to run for it.

Identity comes from the folder, never from the file name: ``SUBMISSIONS/<student>/<anything>NN_name<anything>.ipynb``
(nbgrader's ``submitted/<student>/`` layout). A symbolic link, a file over the size limit, bad JSON, nbformat < 4,
nbgrader metadata that is not a mapping (or a ``grade_id`` that is not a string), or exercise cells of another
chapter reject the whole submission with a one-line reason (0 points); the batch goes on. A missing or duplicated
exercise cell costs only that exercise, with its own reason."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: the largest submission file read, in bytes
MAX_BYTES = 20 << 20
#: the line of an instructor cell that ``camlab course student --roster`` gives each student's seed
SEED_LINE = re.compile(r"^STUDENT_SEED = 0$", re.MULTILINE)


class Rejected(ValueError):
    """The submission cannot be graded; the message is the one-line reason."""


@dataclass
class Submission:
    path: Path
    student: str
    chapter: str
    notebook: object = None
    problems: dict[str, str] = field(default_factory=dict)   # grade_id -> why that exercise gets 0


def chapter_of(path: Path, release_dir: Path) -> Path:
    """The release notebook whose name (e.g. ``01_cam``) occurs in the submission's file name (longest match)."""
    stems = sorted((p.stem for p in release_dir.glob("*.ipynb")), key=len, reverse=True)
    for stem in stems:
        if stem in path.name:
            return release_dir / f"{stem}.ipynb"
    raise ValueError(f"{path}: the file name names no chapter; it must contain one of: {', '.join(sorted(stems))}")


def identify(path: Path, release_dir: Path) -> Submission:
    """Student (the folder's name) and chapter of a submission path; nothing is read yet."""
    return Submission(path, path.parent.name or "unknown", chapter_of(path, release_dir).stem)


def nbgrader(cell) -> dict:
    """A cell's nbgrader metadata, checked: a mapping with a string ``grade_id`` (or no metadata: ``{}``)."""
    metadata = cell.get("metadata", {})
    if not isinstance(metadata, dict):
        raise Rejected("a cell's metadata is not a mapping (edited by hand?)")
    info = metadata.get("nbgrader", {})
    if not isinstance(info, dict):
        raise Rejected(f"a cell's nbgrader metadata is a {type(info).__name__}, not a mapping (edited by hand?)")
    if info and not isinstance(info.get("grade_id", ""), str):
        raise Rejected(f"a cell's grade_id is a {type(info['grade_id']).__name__}, not a string (edited by hand?)")
    return info


def _parse(path: Path, max_bytes: int):
    import json

    import nbformat

    if path.is_symlink() or path.parent.is_symlink():
        raise Rejected("the submission is a symbolic link: submit the notebook file itself")
    size = path.stat().st_size
    if size > max_bytes:
        raise Rejected(f"the file has {size / 2**20:.0f} MB, more than the {max_bytes / 2**20:.0f} MB allowed "
                       "(clear the outputs and submit again)")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise Rejected(f"not a notebook: the file is not valid JSON ({str(error).splitlines()[0][:80]})") from None
    if isinstance(data, dict) and data.get("nbformat") != 4:
        raise Rejected(f"nbformat {data.get('nbformat')!r} notebook: save it with Jupyter (nbformat 4) and submit "
                       "again")
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise Rejected("not a notebook: no list of cells")
    if data.get("nbformat") != 4:
        raise Rejected(f"nbformat {data.get('nbformat')!r} notebook: save it with Jupyter (nbformat 4) and submit "
                       "again")
    for cell in data["cells"]:
        source = cell.get("source", "") if isinstance(cell, dict) else None
        if not (isinstance(source, str) or isinstance(source, list) and all(isinstance(s, str) for s in source)):
            raise Rejected("a cell is not a notebook cell (edited by hand?)")
    try:
        return nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as error:  # nbformat's own structure errors
        raise Rejected(f"not a usable notebook: {type(error).__name__}") from None


def load(submission: Submission, release, max_bytes: int = MAX_BYTES) -> Submission:
    """Read and check the notebook (raises :class:`Rejected`); note missing or duplicated exercise cells."""
    notebook = _parse(submission.path, max_bytes)
    for cell in notebook.cells:
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise Rejected("a cell is not a notebook cell (edited by hand?)")
        nbgrader(cell)
    wanted = [nbgrader(cell)["grade_id"] for cell in release.cells if nbgrader(cell).get("solution")]
    given = [nbgrader(cell).get("grade_id") for cell in notebook.cells if nbgrader(cell).get("solution")]
    if given and not set(given) & set(wanted):
        raise Rejected(f"its exercise cells ({given[0]}, ...) are not {submission.chapter}'s: wrong chapter?")
    for grade_id in wanted:
        count = given.count(grade_id)
        if count == 0:
            submission.problems[grade_id] = f"your notebook has no cell {grade_id} (deleted?)"
        elif count > 1:
            submission.problems[grade_id] = (f"your notebook has {count} cells {grade_id} (a copied cell?): keep "
                                             "one and submit again")
    submission.notebook = notebook
    return submission


def program(release, submission: Submission, seed: int | None = None) -> tuple[list[str], list[bool]]:
    """The cells to run: the release's code cells in order (the lesson, with ``STUDENT_SEED = 0`` set to the
    student's seed), the student's solution cells in place of the instructor's, and every code cell the student
    added (no nbgrader metadata, not a copy of a lesson cell) just before the next exercise cell below it.
    Check cells are not run there: the grader runs them. Returns the sources and which are the student's."""
    lesson = {cell.source for cell in release.cells}
    pending, answers = [], {}
    for cell in submission.notebook.cells:
        info = nbgrader(cell)
        if cell.cell_type != "code":
            continue
        if info.get("solution") and info.get("grade_id") not in submission.problems:
            answers[info["grade_id"]] = pending + [cell.source]
            pending = []
        elif not info and cell.source not in lesson and cell.source.strip():
            pending.append(cell.source)
    sources, mine = [], []
    for cell in release.cells:
        info = nbgrader(cell)
        if cell.cell_type != "code" or (info.get("grade") and not info.get("solution")):
            continue
        if info.get("solution"):
            for source in answers.get(info["grade_id"], []):
                sources.append(source)
                mine.append(True)
        else:
            sources.append(SEED_LINE.sub(f"STUDENT_SEED = {int(seed or 0)}", cell.source))
            mine.append(False)
    return sources + pending, mine + [True] * len(pending)

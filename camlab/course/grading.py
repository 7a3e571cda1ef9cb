"""``camlab course grade SUBMISSIONS...``: grade students' notebooks; the verdict is decided outside the student's
process.

For each submission (:mod:`camlab.course.submissions` says whose it is and rejects what cannot be graded):

1. its program (the chapter's lesson cells with the student's solution cells and added cells) runs in a fresh
   sandbox (:mod:`camlab.course.sandbox`: no network, no other process, none of the instructor's files, its own
   HOME/IPython/tmp/working folder, memory, CPU, file-size and process limits), one cell at a time under a time
   limit (the lesson's cells under a longer one, so a slow machine does not turn correct answers into errors);
2. the instructor's check cells run *in the grader's process*: the visible check call and the hidden tests, with the
   student's functions replaced by :class:`camlab.course.remote.Remote` stand-ins. The student's code only ever
   sees the inputs of a call and returns its result as plain data; the expected answers, the comparison, the
   ``CAMLAB_STRICT_CHECKS`` switch and the checks' modules are the grader's own. Hidden cases may use
   ``STUDENT_SEED`` (the student's seed, :mod:`camlab.course.seeds`) and ``HIDDEN_SEED`` (a seed derived from the
   instructor's secret and the chapter, never in any notebook: hidden cases generated from it at grading time,
   e.g. with :func:`camlab.exercises.cases_from_seed`, exist only in the grader).
3. camlab's own implementation of each exercise (:data:`camlab.exercises.OWN_WORK`) raises inside the sandbox
   while the checks call the student's code, so ``return camlab.metrics.iou(a, b)`` earns nothing.

Each check cell gives one :class:`Row`: passed (its points), failed (a check said so), error (the code could not be
called: a crash, a time or memory limit), rejected (the submission or that cell could not be graded), and for the
written answers (nbgrader's manually graded cells) "to mark" until the instructor's marks are merged
(:mod:`camlab.course.gradebook`). A row's message is the grader's own words, never the student's output."""
from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from camlab.course import sandbox
from camlab.course.submissions import MAX_BYTES, Rejected, Submission, identify, load, nbgrader, program

BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_QUIET = threading.local()         # set in a thread running checks: their prints are dropped
_SETUP_LOCK = threading.Lock()


@dataclass
class Row:
    """One student's result on one exercise (one check cell or one written answer)."""
    student: str
    notebook: str
    exercise: str
    status: str            # "passed", "failed", "error", "rejected" or "to mark"
    points: float
    max_points: float
    message: str


@dataclass
class Options:
    timeout: float = 60             # seconds per student cell and per call
    lesson_timeout: float = 600     # seconds per lesson (instructor) cell
    limits: sandbox.Limits = sandbox.Limits()
    use_sandbox: bool = True
    max_bytes: int = MAX_BYTES
    seeds: dict | None = None       # student -> seed (from the roster and secret)
    secret: bytes | None = None     # the instructor's secret (for HIDDEN_SEED)


def graded_cells(release) -> list:
    """The release's autograded check cells and manually graded answer cells, in order."""
    return [cell for cell in release.cells if nbgrader(cell).get("grade")]


def solution_names(release) -> list[str]:
    """The names the release's solution cells define (``def cam`` -> ``cam``): the checks' stand-ins."""
    names = []
    for cell in release.cells:
        if cell.cell_type == "code" and nbgrader(cell).get("solution"):
            names += re.findall(r"^(?:def|class)\s+(\w+)", cell.source, re.MULTILINE)
    return names


def check_code(source: str) -> str:
    """What of a check cell the grader runs: its visible check call (up to ``if result:``, which uses the
    lesson's variables) and its hidden tests."""
    start, end = source.find(BEGIN_HIDDEN), source.find(END_HIDDEN)
    hidden = source[start + len(BEGIN_HIDDEN):end] if start >= 0 and end > start else ""
    visible = (source[:start] if start >= 0 else source).split("\nif result:")[0]
    return visible + "\n" + hidden


def _verdict(cell, namespace: dict) -> tuple[str, str]:
    import camlab.exercises
    from camlab.course.remote import WorkerGone

    name = nbgrader(cell)["grade_id"]
    try:
        exec(compile(check_code(cell.source), f"<{name}>", "exec"), dict(namespace))
    except camlab.exercises.ExerciseFailed as failure:
        return "failed", str(failure).split(": ", 1)[-1][:300]
    except WorkerGone as gone:
        return "error", str(gone)
    except Exception as error:  # the check itself could not run: the grader's problem, say so
        return "error", f"the check could not run: {type(error).__name__}: {str(error)[:200]}"
    return "passed", ""


def run_checks(release, session, submission: Submission, seed: int, note: str, timeout: float = 60,
               hidden_seed: int = 0) -> list[Row]:
    """Every graded cell's row, the checks run here with the student's objects as stand-ins."""
    import numpy
    import torch

    import camlab
    from camlab.course.remote import Remote

    namespace = {"camlab": camlab, "torch": torch, "np": numpy, "numpy": numpy, "STUDENT_SEED": seed,
                 "HIDDEN_SEED": hidden_seed}
    namespace.update({name: Remote(session, name, timeout=timeout) for name in solution_names(release)})
    rows = []
    for cell in graded_cells(release):
        info = nbgrader(cell)
        points, grade_id = float(info.get("points", 0)), info["grade_id"]
        solution = grade_id.removesuffix("_check")
        if info.get("solution"):
            rows.append(Row(submission.student, submission.chapter, grade_id, "to mark", 0.0, points,
                            "a written answer: the instructor marks it"))
            continue
        if solution in submission.problems:
            rows.append(Row(submission.student, submission.chapter, grade_id, "rejected", 0.0, points,
                            submission.problems[solution]))
            continue
        with _checks_running():
            status, message = _verdict(cell, namespace)
        if status != "passed" and note:
            message = f"{message} ({note})".strip()
        rows.append(Row(submission.student, submission.chapter, grade_id, status,
                        points if status == "passed" else 0.0, points, message))
    return rows


class _QuietChecks(io.TextIOBase):
    """``sys.stdout`` while checks run: what the checks print in a grading thread is dropped, the rest passes."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return len(text) if getattr(_QUIET, "on", False) else self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def _checks_running():
    """Checks raise on failure (``CAMLAB_STRICT_CHECKS=1`` in the grader's process) and print nothing, per thread,
    so that several submissions' checks run at once (``--jobs``) without a lock held over a slow student call."""
    import sys

    with _SETUP_LOCK:
        if not isinstance(sys.stdout, _QuietChecks):
            sys.stdout = _QuietChecks(sys.stdout)
        os.environ["CAMLAB_STRICT_CHECKS"] = "1"
    _QUIET.on = True
    try:
        yield
    finally:
        _QUIET.on = False


def _lesson_note(results: list[dict], mine: list[bool]) -> str:
    """A note for the rows when one of the chapter's own cells failed: not the student's doing."""
    for index, (result, student) in enumerate(zip(results, mine)):
        if not student and result["status"] != "ok":
            return (f"note: the chapter's own code cell {index + 1} failed in grading ({result['error']}); "
                    "the instructor should regrade with a longer --lesson-timeout")
    return ""


def rejected_rows(submission: Submission, release, reason: str) -> list[Row]:
    return [Row(submission.student, submission.chapter, nbgrader(cell)["grade_id"], "rejected", 0.0,
                float(nbgrader(cell).get("points", 0)), reason) for cell in graded_cells(release)]


def grade_submission(path: str | Path, release_dir: str | Path, options: Options | None = None) -> dict:
    """Grade one submitted notebook: ``{"student", "notebook", "seconds", "rows": [...], "answers": {...}}``
    (JSON-able; ``answers``: the written answers by grade_id, for marking)."""
    import nbformat

    from camlab.exercises._own_work import own_work_for
    from camlab.course.remote import Session, WorkerGone
    from camlab.course.seeds import seed_for

    options, start = options or Options(), time.perf_counter()
    submission = identify(Path(path), Path(release_dir))
    release = nbformat.read(Path(release_dir) / f"{submission.chapter}.ipynb", as_version=4)
    seed = int((options.seeds or {}).get(submission.student, 0))
    try:
        load(submission, release, options.max_bytes)
    except (Rejected, OSError) as error:
        rows = rejected_rows(submission, release, f"not graded: {error}")
        return _result(submission, rows, {}, start)
    sources, mine = program(release, submission, seed)
    session = None
    try:
        session = Session(options.limits, options.use_sandbox)
        timeouts = [options.timeout if student else options.lesson_timeout for student in mine]
        results = _run(session, sources, mine, timeouts, own_work_for(submission.chapter))
        hidden_seed = seed_for(options.secret, f"hidden/{submission.chapter}") if options.secret else 0
        rows = run_checks(release, session, submission, seed, _lesson_note(results, mine), options.timeout,
                          hidden_seed)
    except WorkerGone as gone:
        rows = rejected_rows(submission, release, f"error: {gone}")
    finally:
        if session is not None:
            session.close()
    return _result(submission, rows, written_answers(submission.notebook, release), start)


def _run(session, sources, mine, timeouts, own_work) -> list[dict]:
    """Run the program cell by cell (each with its own limit) and then arm the own-work traps."""
    results = []
    for source, timeout in zip(sources, timeouts):
        results += session.run([source], timeout, [])
    session.run([], 1, own_work)
    return results


def written_answers(notebook, release) -> dict[str, str]:
    """The student's written answers (manually graded Markdown cells) by grade_id."""
    wanted = {nbgrader(cell)["grade_id"] for cell in graded_cells(release) if nbgrader(cell).get("solution")}
    return {nbgrader(cell)["grade_id"]: cell.source for cell in notebook.cells
            if nbgrader(cell).get("grade_id") in wanted}


def _result(submission: Submission, rows: list[Row], answers: dict, start: float) -> dict:
    return {"student": submission.student, "notebook": submission.chapter, "file": str(submission.path),
            "seconds": round(time.perf_counter() - start, 2), "rows": [asdict(row) for row in rows],
            "answers": answers}


def duplicates(paths: list[Path], release_dir: Path) -> dict[Path, str]:
    """Submissions that share a student and chapter: each gets a reason instead of a grade."""
    seen: dict[tuple, list[Path]] = {}
    for path in paths:
        submission = identify(path, release_dir)
        seen.setdefault((submission.student, submission.chapter), []).append(path)
    return {path: f"not graded: {len(group)} files for {key[0]}'s {key[1]} in this batch ({', '.join(p.name for p in group)}): keep one"
            for key, group in seen.items() if len(group) > 1 for path in group}


def grade(submissions: list[str | Path], release_dir: str | Path | None = None, options: Options | None = None,
          jobs: int = 1) -> list[dict]:
    """Grade every submission (``jobs`` at a time); one result per submission, in the given order."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import nbformat

    from camlab.course import notebooks_dir

    release_dir = Path(release_dir) if release_dir else notebooks_dir()
    paths = [Path(path) for path in submissions]
    for path in paths:
        if not path.is_file() and not path.is_symlink():
            raise FileNotFoundError(f"{path}: no such submission file (give the students' .ipynb files)")
        identify(path, release_dir)
    if (options or Options()).use_sandbox:
        sandbox.check_available()
    refused = duplicates(paths, release_dir)

    def one(path: Path) -> dict:
        if path in refused:
            submission = identify(path, release_dir)
            release = nbformat.read(release_dir / f"{submission.chapter}.ipynb", as_version=4)
            return _result(submission, rejected_rows(submission, release, refused[path]), {}, time.perf_counter())
        return grade_submission(path, release_dir, options)

    previous = sys.stdout, os.environ.get("CAMLAB_STRICT_CHECKS")
    try:
        with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
            return list(pool.map(one, paths))
    finally:   # the grader's own settings, as they were
        sys.stdout = previous[0]
        if previous[1] is None:
            os.environ.pop("CAMLAB_STRICT_CHECKS", None)
        else:
            os.environ["CAMLAB_STRICT_CHECKS"] = previous[1]

"""``camlab course grade SUBMISSIONS...``: grade students' notebooks with the instructor's checks.

For each submission the grader builds the notebook to run from the *release* (instructor) version of its chapter:
every cell is the instructor's except the solution cells, which are the student's cells with the same nbgrader
``grade_id`` (a missing one counts as unfinished). So the check cells, hidden tests included, are always the
instructor's: a student cannot edit or delete what grades them; code outside the solution cells is not graded and
not run. The notebook runs in a fresh kernel, in its own temporary folder, with ``CAMLAB_STRICT_CHECKS=1`` (a wrong
or unfinished answer fails its check cell), a time limit per cell and per notebook, and a cap on stored output, so a
submission that crashes, loops, floods the output or deletes files cannot stop or corrupt the grading of the
others. Each check cell gives one row: passed (its points), failed (a check said so) or error (anything else)."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from camlab.course.student import grading_info, is_check, is_solution

#: stored output per cell, in characters, beyond which a submission's output is dropped
MAX_OUTPUT = 100_000


@dataclass
class Row:
    """One student's result on one exercise (one check cell)."""
    student: str
    notebook: str
    exercise: str
    status: str            # "passed", "failed" or "error"
    points: float
    max_points: float
    message: str


def chapter_of(path: Path, release_dir: Path) -> Path:
    """The release notebook whose name (e.g. ``01_cam``) occurs in the submission's file name (longest match)."""
    stems = sorted((p.stem for p in release_dir.glob("*.ipynb")), key=len, reverse=True)
    for stem in stems:
        if stem in path.stem:
            return release_dir / f"{stem}.ipynb"
    raise ValueError(f"{path}: the file name names no chapter; it must contain one of: {', '.join(sorted(stems))}")


def student_of(path: Path, chapter: str) -> str:
    """``alice_01_cam.ipynb`` -> alice; ``alice/01_cam.ipynb`` -> alice (the folder when the name is the chapter's)."""
    rest = path.stem.replace(chapter, "").strip("_-. ")
    return rest or path.resolve().parent.name


def assemble(release, submission):
    """The notebook to run: the release notebook, outputs cleared, with the submission's solution cells (matched by
    ``grade_id``) in place of the instructor's; a solution cell missing from the submission gets the stub."""
    import copy

    from camlab.course.student import student_cell

    answers = {grading_info(cell)["grade_id"]: cell["source"] for cell in submission.cells
               if is_solution(cell) and grading_info(cell).get("grade_id")}
    notebook = copy.deepcopy(release)
    for cell in notebook.cells:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if is_solution(cell):
            cell["source"] = answers.get(grading_info(cell)["grade_id"], student_cell(cell)["source"])
    return notebook


def _client_class():
    """nbclient's ``NotebookClient`` that records every cell's execute reply and caps each cell's stored output."""
    import nbformat
    from nbclient import NotebookClient

    class GradingClient(NotebookClient):
        def __init__(self, *args, max_output: int = MAX_OUTPUT, **kwargs):
            super().__init__(*args, **kwargs)
            self.replies, self.max_output, self.output_size = {}, max_output, {}

        def _check_raise_for_error(self, cell, cell_index, exec_reply):
            self.replies[cell_index] = (exec_reply or {}).get("content", {})
            return super()._check_raise_for_error(cell, cell_index, exec_reply)

        def output(self, outs, msg, display_id, cell_index):
            size = self.output_size.get(cell_index, 0)
            if size > self.max_output:
                return None
            self.output_size[cell_index] = size + len(str(msg.get("content", "")))
            if self.output_size[cell_index] > self.max_output:
                note = f"[output beyond {self.max_output} characters dropped by the grader]\n"
                outs.append(nbformat.v4.new_output("stream", name="stderr", text=note))
                return None
            return super().output(outs, msg, display_id, cell_index)

    return GradingClient


def run_notebook(notebook, workdir: Path, timeout: float, max_output: int = MAX_OUTPUT) -> dict[int, dict]:
    """Execute ``notebook`` (in place) in a fresh kernel started in ``workdir`` with ``CAMLAB_STRICT_CHECKS=1``: each
    cell may run ``timeout`` seconds (then it is interrupted and the next cell runs), the whole notebook
    4 x ``timeout`` + 60 s (then the kernel is killed); each cell keeps at most ``max_output`` characters of output.
    Return the execute reply of every cell that ran, by index."""
    client = _client_class()(notebook, max_output=max_output, timeout=int(timeout), kernel_name="python3",
                             allow_errors=True, interrupt_on_timeout=True,
                             resources={"metadata": {"path": str(workdir)}},
                             error_on_timeout={"ename": "Timeout", "evalue": f"the cell ran past {timeout:g} s",
                                               "traceback": []})
    env = {**os.environ, "CAMLAB_STRICT_CHECKS": "1", "MPLBACKEND": "Agg"}

    def execute():
        try:
            client.execute(env=env)
        except Exception:  # a dead or killed kernel ends the run; the rows say which checks did not run
            pass

    worker = threading.Thread(target=execute, daemon=True)
    worker.start()
    worker.join(4 * timeout + 60)
    if worker.is_alive():
        _kill_kernel(client)
        worker.join(30)
    return client.replies


def _kill_kernel(client) -> None:
    provisioner = getattr(getattr(client, "km", None), "provisioner", None)
    group = getattr(provisioner, "pgid", None)
    try:
        if group:
            os.killpg(group, signal.SIGKILL)
        elif getattr(provisioner, "process", None) is not None:
            provisioner.process.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _row_for(student: str, chapter: str, cell, reply: dict | None) -> Row:
    info = grading_info(cell)
    points = float(info.get("points", 0))
    exercise = info["grade_id"]
    if reply is None:
        return Row(student, chapter, exercise, "error", 0.0, points, "not run: the notebook stopped before this check "
                                                                      "(time limit or a crashed kernel)")
    if reply.get("status") == "ok":
        return Row(student, chapter, exercise, "passed", points, points, "")
    name, value = reply.get("ename", "Error"), (str(reply.get("evalue", "")).strip().splitlines() or [""])[0]
    if name == "ExerciseFailed":
        return Row(student, chapter, exercise, "failed", 0.0, points, value)
    return Row(student, chapter, exercise, "error", 0.0, points, f"{name}: {value}"[:300])


def grade_submission(path: str | Path, release_dir: Path, timeout: float = 60) -> list[Row]:
    """Grade one submitted notebook: one row per check cell of its chapter."""
    import nbformat

    path = Path(path)
    release_path = chapter_of(path, release_dir)
    release = nbformat.read(release_path, as_version=4)
    student, chapter = student_of(path, release_path.stem), release_path.stem
    checks = [(index, cell) for index, cell in enumerate(release.cells) if is_check(cell)]
    try:
        submission = nbformat.read(path, as_version=4)
    except Exception as error:  # any unreadable file: every check of the chapter gets an error row
        message = f"not a readable notebook: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return [Row(student, chapter, grading_info(cell)["grade_id"], "error", 0.0,
                    float(grading_info(cell).get("points", 0)), message[:300]) for _, cell in checks]
    workdir = Path(tempfile.mkdtemp(prefix=f"camlab-grade-{student}-"))
    try:
        replies = run_notebook(assemble(release, submission), workdir, timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return [_row_for(student, chapter, cell, replies.get(index)) for index, cell in checks]


def grade(submissions: list[str | Path], release_dir: str | Path | None = None, timeout: float = 60,
          csv_path: str | Path | None = None) -> list[Row]:
    """Grade every submission (see the module's docstring), optionally write the rows to ``csv_path``."""
    from camlab.course import notebooks_dir

    release_dir = Path(release_dir) if release_dir else notebooks_dir()
    paths = [Path(path) for path in submissions]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such submission file (give the students' .ipynb files)")
        chapter_of(path, release_dir)
    rows = [row for path in paths for row in grade_submission(path, release_dir, timeout)]
    if csv_path:
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([field.name for field in fields(Row)])
            writer.writerows(astuple(row) for row in rows)
    return rows


def summary(rows: list[Row]) -> str:
    """A plain-text table: one line per student and notebook with the points and every exercise's status."""
    lines, groups = [], {}
    for row in rows:
        groups.setdefault((row.student, row.notebook), []).append(row)
    for (student, notebook), group in groups.items():
        got, total = sum(row.points for row in group), sum(row.max_points for row in group)
        lines.append(f"{student:16s} {notebook:28s} {got:g}/{total:g}")
        lines += [f"    {row.exercise:32s} {row.status:7s} {row.message}" for row in group]
    return "\n".join(lines)

"""What grading writes: one JSON result per submission, merged into the class's gradebook and each student's
feedback.

``camlab course grade ... --out DIR`` (or ``camlab course merge RESULTS... --out DIR`` over results graded apart,
e.g. one Slurm array task per submission) writes:

- ``DIR/results/<student>__<chapter>.json``: one submission's rows (what ``grade --result`` writes alone);
- ``DIR/grades.csv``: one line per student, one column per exercise (``<chapter>/<grade_id>``) with its points,
  then ``total`` and ``max_total``;
- ``DIR/rows.csv``: one line per student and exercise (status, points, max_points, message);
- ``DIR/nbgrader.csv``: nbgrader's ``export`` format (assignment, student_id, raw_score, score, max_score, ...);
- ``DIR/feedback/<student>/<chapter>.md``: each exercise's status, points and hint (the grader's words only: no
  hidden case, no output of the student's code);
- ``DIR/answers.csv``: the written answers to mark (student, notebook, exercise, max_points, answer, points); fill
  in ``points`` and give the file back with ``--marks``: the marks replace the "to mark" rows."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import fields
from pathlib import Path

from camlab.course.grading import Row

_SAFE = re.compile(r"[^\w.-]+")


def safe(name: str) -> str:
    """A name usable as a file name (the student's folder name made harmless)."""
    return _SAFE.sub("_", name).strip("._") or "unknown"


def write_result(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return path


def read_results(paths: list[str | Path]) -> list[dict]:
    """Results written by ``grade --result`` (files or folders of ``*.json``)."""
    files = []
    for path in map(Path, paths):
        files += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return [json.loads(file.read_text(encoding="utf-8")) for file in files]


def rows_of(results: list[dict]) -> list[Row]:
    return [Row(**row) for result in results for row in result["rows"]]


def apply_marks(results: list[dict], marks_csv: str | Path) -> None:
    """Put the instructor's marks (a CSV with student, notebook, exercise, points) on the "to mark" rows."""
    with open(marks_csv, newline="", encoding="utf-8") as handle:
        marks = {(row["student"], row["notebook"], row["exercise"]): row["points"] for row in csv.DictReader(handle)
                 if str(row.get("points", "")).strip()}
    for result in results:
        for row in result["rows"]:
            key = (row["student"], row["notebook"], row["exercise"])
            if row["status"] == "to mark" and key in marks:
                points = float(marks[key])
                if not 0 <= points <= row["max_points"]:
                    raise ValueError(f"{marks_csv}: {points:g} points for {'/'.join(key)}, which is worth 0 to "
                                     f"{row['max_points']:g}")
                row.update(status="marked", points=points, message="marked by the instructor")


def write_rows(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([field.name for field in fields(Row)])
        writer.writerows([getattr(row, field.name) for field in fields(Row)] for row in rows)


def write_grades(rows: list[Row], path: Path) -> None:
    """The class's gradebook: a line per student, a column per exercise."""
    columns = list(dict.fromkeys(f"{row.notebook}/{row.exercise}" for row in rows))
    students: dict[str, dict] = {}
    for row in rows:
        line = students.setdefault(row.student, {"student": row.student, "total": 0.0, "max_total": 0.0})
        line[f"{row.notebook}/{row.exercise}"] = f"{row.points:g}"
        line["total"] += row.points
        line["max_total"] += row.max_points
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["student", *columns, "total", "max_total"])
        writer.writeheader()
        for line in students.values():
            writer.writerow({**line, "total": f"{line['total']:g}", "max_total": f"{line['max_total']:g}"})


def write_nbgrader(rows: list[Row], path: Path) -> None:
    """nbgrader's ``nbgrader export`` CSV: one line per student and assignment (notebook)."""
    totals: dict[tuple, list[float]] = {}
    for row in rows:
        total = totals.setdefault((row.notebook, row.student), [0.0, 0.0])
        total[0] += row.points
        total[1] += row.max_points
    header = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
              "late_submission_penalty", "score", "max_score"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for (notebook, student), (got, best) in totals.items():
            writer.writerow([notebook, "", "", student, "", "", "", f"{got:g}", "0", f"{got:g}", f"{best:g}"])


def feedback(result: dict) -> str:
    """A student's feedback on one notebook, in Markdown."""
    rows = result["rows"]
    got, best = sum(row["points"] for row in rows), sum(row["max_points"] for row in rows)
    lines = [f"# {result['notebook']}: {result['student']}", "", f"**{got:g} of {best:g} points**", "",
             "| exercise | status | points | hint |", "|---|---|---|---|"]
    for row in rows:
        hint = row["message"].replace("|", "/").replace("\n", " ")
        lines.append(f"| {row['exercise']} | {row['status']} | {row['points']:g} / {row['max_points']:g} | {hint} |")
    return "\n".join(lines) + "\n"


def write_answers(results: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "notebook", "exercise", "max_points", "answer", "points"])
        for result in results:
            for row in result["rows"]:
                if row["status"] == "to mark":
                    answer = result.get("answers", {}).get(row["exercise"], "")
                    writer.writerow([row["student"], row["notebook"], row["exercise"], f"{row['max_points']:g}",
                                     answer, ""])


def write_all(results: list[dict], out: str | Path, marks: str | Path | None = None) -> Path:
    """Every file of the module's docstring into ``out``; returns ``out``."""
    out = Path(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    if marks:
        apply_marks(results, marks)
    for result in results:
        write_result(result, out / "results" / f"{safe(result['student'])}__{safe(result['notebook'])}.json")
        folder = out / "feedback" / safe(result["student"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{safe(result['notebook'])}.md").write_text(feedback(result), encoding="utf-8")
    rows = rows_of(results)
    write_rows(rows, out / "rows.csv")
    write_grades(rows, out / "grades.csv")
    write_nbgrader(rows, out / "nbgrader.csv")
    write_answers(results, out / "answers.csv")
    return out


def summary(rows: list[Row]) -> str:
    """A plain-text table: one line per student and notebook with the points and every exercise's status."""
    lines, groups = [], {}
    for row in rows:
        groups.setdefault((row.student, row.notebook), []).append(row)
    for (student, notebook), group in groups.items():
        got, total = sum(row.points for row in group), sum(row.max_points for row in group)
        lines.append(f"{student:16s} {notebook:28s} {got:g}/{total:g}")
        lines += [f"    {row.exercise:32s} {row.status:8s} {row.message}" for row in group]
    return "\n".join(lines)

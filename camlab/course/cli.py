"""``camlab course ...``: the course's command-line tools (one sub-command per job)."""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_execute(args) -> None:
    """Re-run notebooks top to bottom in place, so their stored outputs are the current code's."""
    from camlab.course import CHAPTERS, execute_notebook, notebooks_dir

    paths = args.notebooks or [notebooks_dir() / f"{stem}.ipynb" for stem in CHAPTERS]
    for path in paths:
        print(f"{path}: {execute_notebook(path, timeout=args.timeout):.1f} s", flush=True)


def cmd_badges(args) -> None:
    """Write the Colab badges and setup cells derived from ``camlab.course.INSTALL_SOURCE`` (``--check``: only list)."""
    from camlab.course import INSTALL_SOURCE, notebooks_dir
    from camlab.course.badges import write_badges

    stale = write_badges(Path(args.root) if args.root else notebooks_dir().parent, check=args.check)
    if args.check and stale:
        raise RuntimeError(f"out of date with {INSTALL_SOURCE!r}: {', '.join(map(str, stale))}; "
                           "run `camlab course badges`")
    print("\n".join(f"{'stale' if args.check else 'updated'}: {path}" for path in stale) or "up to date")


def cmd_student(args) -> None:
    """Write the students' notebooks (solutions replaced by stubs, hidden tests and folded answers removed, outputs
    cleared); with ``--roster`` and ``--secret-file`` one folder per student with that student's seed."""
    from camlab.course.student import write_student_versions

    if bool(args.roster) != bool(args.secret_file):
        raise ValueError("--roster and --secret-file go together: the seeds derive from both")
    for path in write_student_versions(args.out_dir, args.notebooks, roster=args.roster, secret_file=args.secret_file):
        print(path)


def _options(args):
    from camlab.course.grading import Options
    from camlab.course.sandbox import Limits
    from camlab.course.seeds import read_secret, seeds

    if bool(args.roster) != bool(args.secret_file):
        raise ValueError("--roster and --secret-file go together: the seeds derive from both")
    limits = Limits(memory_bytes=args.memory_mb << 20, processes=args.processes)
    return Options(timeout=args.timeout, lesson_timeout=args.lesson_timeout, limits=limits,
                   use_sandbox=not args.no_sandbox, max_bytes=args.max_mb << 20,
                   seeds=seeds(args.roster, args.secret_file) if args.roster else None,
                   secret=read_secret(args.secret_file) if args.secret_file else None)


def cmd_grade(args) -> None:
    """Grade submitted notebooks (see ``camlab.course.grading``); print a summary and write what was asked for."""
    from camlab.course import gradebook
    from camlab.course.grading import grade

    if args.result and len(args.submissions) != 1:
        raise ValueError("--result writes one submission's result: give exactly one submission")
    results = grade(args.submissions, args.release, _options(args), jobs=args.jobs)
    if args.result:
        gradebook.write_result(results[0], args.result)
    if args.out:
        gradebook.write_all(results, args.out, args.marks)
    rows = gradebook.rows_of(results)
    if args.csv:
        gradebook.write_rows(rows, Path(args.csv))
    print(gradebook.summary(rows))


def cmd_merge(args) -> None:
    """Merge results graded one by one (``grade --result``) into the gradebook and feedback files."""
    from camlab.course import gradebook

    results = gradebook.read_results(args.results)
    if not results:
        raise ValueError(f"no results in {', '.join(args.results)}: give the .json files `grade --result` wrote")
    print(gradebook.write_all(results, args.out, args.marks))


def _grade_parser(tools) -> None:
    grade = tools.add_parser("grade", help="grade submitted notebooks in sandboxes; the checks run in the grader")
    grade.add_argument("submissions", nargs="+", help="submitted notebooks, one folder per student: "
                                                      "SUBMITTED/alice/01_cam.ipynb")
    grade.add_argument("--out", help="write results/, feedback/, grades.csv, rows.csv, nbgrader.csv, answers.csv")
    grade.add_argument("--result", help="write this one submission's result (JSON) here, for `course merge`")
    grade.add_argument("--csv", help="write one row per student and exercise to this CSV file")
    grade.add_argument("--marks", help="a CSV of marks for the written answers (answers.csv filled in)")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    grade.add_argument("--timeout", type=float, default=60, help="seconds per student cell and per check call")
    grade.add_argument("--lesson-timeout", type=float, default=600, help="seconds per cell of the chapter's own code")
    grade.add_argument("--memory-mb", type=int, default=6144, help="address space per sandboxed process (MiB)")
    grade.add_argument("--processes", type=int, default=64, help="processes and threads per sandbox")
    grade.add_argument("--max-mb", type=int, default=20, help="the largest submission file read (MiB)")
    grade.add_argument("--roster", help="the roster CSV (student ids), to give each student's seed to the checks")
    grade.add_argument("--secret-file", help="the instructor's secret (keep it outside the repository)")
    grade.add_argument("--release", help="folder of the instructor's notebooks (default: the course's)")
    grade.add_argument("--no-sandbox", action="store_true", help="run without bubblewrap: trusted notebooks only "
                                                                 "(files readable, processes visible)")
    grade.set_defaults(run=cmd_grade)
    merge = tools.add_parser("merge", help="merge results written by `grade --result` into a gradebook")
    merge.add_argument("results", nargs="+", help="result files or folders of them")
    merge.add_argument("--out", required=True, help="folder for feedback/, grades.csv, nbgrader.csv, answers.csv")
    merge.add_argument("--marks", help="a CSV of marks for the written answers (answers.csv filled in)")
    merge.set_defaults(run=cmd_merge)


def _chapter_paths(args) -> list[Path]:
    from camlab.course import CHAPTERS, notebooks_dir

    return [Path(p) for p in args.notebooks] or [notebooks_dir() / f"{stem}.ipynb" for stem in CHAPTERS]


def cmd_claims(args) -> None:
    """List the numbers in the chapters' Markdown that no stored output prints and no quoted figure declares."""
    from camlab.course.claims import unbacked_numbers

    missing = {path: unbacked_numbers(path) for path in _chapter_paths(args)}
    for path, numbers in missing.items():
        print(f"{path.name}: " + (", ".join(f"cell {cell}: {number}" for cell, number in numbers) or "every number backed"))
    if any(missing.values()):
        raise RuntimeError("print these numbers in a cell of the same notebook, at the precision of the text, or "
                           "declare quoted figures with their source in metadata.camlab.quoted")


def cmd_findings(args) -> None:
    """Print the table of findings that the chapters' stored outputs state; fail on contradicting chapters."""
    from camlab.course.claims import collect_findings
    from camlab.findings import conflicts, table

    found = collect_findings(_chapter_paths(args))
    print(table(found))
    clashes = conflicts(found)
    if clashes:
        raise RuntimeError("chapters state different verdicts on the same claim, model and layer: " + "; ".join(
            f"{a.claim} ({a.chapter}: {a.word}, {b.chapter}: {b.word})" for a, b in clashes))


def register(commands) -> None:
    """Add ``course`` and its sub-commands to the ``camlab`` parser's sub-parsers."""
    course = commands.add_parser("course", help="course tools: re-run the notebooks, Colab badges, student versions, grading")
    tools = course.add_subparsers(dest="course_command", required=True)

    execute = tools.add_parser("execute", help="re-run notebooks in place (default: every chapter)")
    execute.add_argument("notebooks", nargs="*", help="notebook files (default: all chapters)")
    execute.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    execute.set_defaults(run=cmd_execute)

    claims = tools.add_parser("claims", help="list numbers in the chapters' text that no output prints")
    claims.add_argument("notebooks", nargs="*", help="notebook files (default: all chapters)")
    claims.set_defaults(run=cmd_claims)

    findings = tools.add_parser("findings", help="the table of findings the chapters state; fails on contradictions")
    findings.add_argument("notebooks", nargs="*", help="notebook files (default: all chapters)")
    findings.set_defaults(run=cmd_findings)

    badges = tools.add_parser("badges", help="write the Colab badges and setup cells from INSTALL_SOURCE")
    badges.add_argument("--root", help="the checkout holding notebooks/ and README.md (default: this one)")
    badges.add_argument("--check", action="store_true", help="change nothing; fail if a file is out of date")
    badges.set_defaults(run=cmd_badges)

    student = tools.add_parser("student", help="write the students' notebooks (no solutions, hidden tests or answers)")
    student.add_argument("out_dir", help="folder for the students' notebooks")
    student.add_argument("notebooks", nargs="*", help="instructor notebooks (default: all chapters)")
    student.add_argument("--roster", help="roster CSV: one folder per student, each with the student's seed")
    student.add_argument("--secret-file", help="the instructor's secret (keep it outside the repository)")
    student.set_defaults(run=cmd_student)

    _grade_parser(tools)

if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="camlab")
    register(parser.add_subparsers(dest="command", required=True))
    arguments = parser.parse_args()
    arguments.run(arguments)

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
    """Write the students' notebooks (solutions replaced by stubs, hidden tests removed, outputs cleared)."""
    from camlab.course.student import write_student_versions

    for path in write_student_versions(args.out_dir, args.notebooks):
        print(path)


def cmd_grade(args) -> None:
    """Grade submitted notebooks with the instructor's checks; print a summary, optionally write a CSV."""
    from camlab.course.grading import grade, summary

    print(summary(grade(args.submissions, args.release, args.timeout, args.csv)))


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

    student = tools.add_parser("student", help="write the students' notebooks (no solutions, no hidden tests)")
    student.add_argument("out_dir", help="folder for the students' notebooks")
    student.add_argument("notebooks", nargs="*", help="instructor notebooks (default: all chapters)")
    student.set_defaults(run=cmd_student)

    grade = tools.add_parser("grade", help="grade submitted notebooks with the instructor's visible and hidden checks")
    grade.add_argument("submissions", nargs="+", help="submitted notebooks, e.g. alice/01_cam.ipynb")
    grade.add_argument("--csv", help="write one row per student and exercise to this CSV file")
    grade.add_argument("--timeout", type=float, default=60, help="seconds per cell (the notebook: 4x + 60 s)")
    grade.add_argument("--release", help="folder of the instructor's notebooks (default: the course's)")
    grade.set_defaults(run=cmd_grade)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="camlab")
    register(parser.add_subparsers(dest="command", required=True))
    arguments = parser.parse_args()
    arguments.run(arguments)

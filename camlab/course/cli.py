"""``camlab course ...``: the course's command-line tools (one sub-command per job)."""
from __future__ import annotations

import argparse


def cmd_execute(args) -> None:
    """Re-run notebooks top to bottom in place, so their stored outputs are the current code's."""
    from camlab.course import CHAPTERS, execute_notebook, notebooks_dir

    paths = args.notebooks or [notebooks_dir() / f"{stem}.ipynb" for stem in CHAPTERS]
    for path in paths:
        print(f"{path}: {execute_notebook(path, timeout=args.timeout):.1f} s", flush=True)


def register(commands) -> None:
    """Add ``course`` and its sub-commands to the ``camlab`` parser's sub-parsers."""
    course = commands.add_parser("course", help="course tools: re-run the notebooks, ...")
    tools = course.add_subparsers(dest="course_command", required=True)

    execute = tools.add_parser("execute", help="re-run notebooks in place (default: every chapter)")
    execute.add_argument("notebooks", nargs="*", help="notebook files (default: all chapters)")
    execute.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    execute.set_defaults(run=cmd_execute)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="camlab")
    register(parser.add_subparsers(dest="command", required=True))
    arguments = parser.parse_args()
    arguments.run(arguments)

"""``camlab evaluate`` / ``python -m camlab.evaluate``: run the table and print it."""
from __future__ import annotations

from collections.abc import Sequence

from camlab.evaluate.runner import DEFAULT_METHODS, run
from camlab.evaluate.table import format_table


def main(argv: Sequence[str] | None = None) -> None:  # python -m camlab.evaluate [--quick] [--out DIR]
    import argparse

    parser = argparse.ArgumentParser(prog="camlab evaluate",
                                     description="The reproducible results table: every method against every metric.")
    parser.add_argument("--quick", action="store_true", help="a small run (seconds)")
    parser.add_argument("--datasets", nargs="+", choices=["lab", "photos"])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--scenes", type=int, default=None, help="lab scenes (default 200)")
    parser.add_argument("--out", default=None, help="folder for results.csv and results.md")
    parser.add_argument("--threads", type=int, default=None, help="torch threads during the run (e.g. 1)")
    args = parser.parse_args(argv)
    table = run(quick=args.quick, datasets=args.datasets, methods=args.methods, n_scenes=args.scenes, out=args.out,
                verbose=True, threads=args.threads)
    print()
    print(format_table(table))

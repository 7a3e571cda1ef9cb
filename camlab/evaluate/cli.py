"""``camlab evaluate`` / ``python -m camlab.evaluate``: run the table and print it.

Follows ``camlab``'s conventions (:mod:`camlab.cli`): a usage error (an unknown method, model, data set or device,
a number out of range) is one line on stderr and exit status 2, found before anything loads; a failure while
running is one line and exit status 1; never a traceback. Progress goes to stderr (``--no-progress`` hides it),
the table to stdout.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from camlab.cli_args import Parser, UsageError, _check_model, parse_device, parse_methods
from camlab.cli_args import _positive as count  # a whole number >= 1, as camlab explain's --batch-size
from camlab.evaluate.datasets import LAB_LAYOUTS
from camlab.evaluate.runner import DEFAULT_METHODS, run
from camlab.evaluate.table import format_table

#: the lab set is built and explained in memory (inputs, masks and every method's maps): about 0.2 MB a scene per
#: method, so 10,000 scenes and 7 methods need some 14 GB; 100,000,000 ran into the out-of-memory killer
MAX_SCENES = 10_000


def resolve_device(name: str):
    """``--device``: ``auto`` picks CUDA, else Apple's MPS, else the CPU; any other name is checked as
    ``camlab explain --device`` checks it (:func:`camlab.cli.parse_device`: a usage error if it is not available)."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    return parse_device(name)


def _check_models(args) -> None:
    """The lab model must be one of the lab's classifiers, the photo model one of the ImageNet models (usage
    errors, before anything loads)."""
    from camlab.lab.zoo import LAB_MODELS

    for option, name, lab in (("--lab-model", args.lab_model, True), ("--photo-model", args.photo_model, False)):
        _check_model(name)
        if (name in LAB_MODELS) != lab:
            kind = "a lab model (64x64 scenes), e.g. lab_gap" if lab else "an ImageNet model, e.g. efficientnet_lite0"
            raise UsageError(f"{option} {name}: it needs {kind}; list the models with `camlab models`")
        if lab and LAB_MODELS[name].recipe.kind != "classifier":
            classifiers = [n for n, spec in LAB_MODELS.items() if spec.recipe.kind == "classifier"]
            raise UsageError(f"{option} {name} is a {LAB_MODELS[name].recipe.kind} model; the table explains "
                             f"classifiers: {', '.join(classifiers)}")


def _check_out(out: str | None) -> None:
    """``--out`` must be a folder camlab can write, checked before the run (not after an hour of it)."""
    if out is None:
        return
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {out}: a file of that name exists; --out names a folder for the results")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {existing} is not writable; name a folder you can write to")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="camlab evaluate",
                    description="The reproducible results table: every method against every metric, each mean with "
                                "its 95% interval, on the synthetic lab and on the bundled photos.")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller smoke run: the lab set only (unless --datasets names photos too), 16 scenes, "
                             "8 deletion/insertion steps, sanity check on 4 samples; minutes on a 2-core CPU")
    parser.add_argument("--datasets", nargs="+", choices=["lab", "photos"], help="default: lab photos")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME[,NAME...]",
                        help=f"methods (default: {' '.join(DEFAULT_METHODS)})")
    parser.add_argument("--scenes", type=count, default=None, help="lab scenes (default 120; 16 with --quick)")
    parser.add_argument("--lab-model", default="lab_gap", help="the lab set's model (default: lab_gap)")
    parser.add_argument("--photo-model", default="efficientnet_lite0",
                        help="the photo set's model (default: efficientnet_lite0)")
    parser.add_argument("--out", default=None, help="folder for results.csv, results.md and results.json")
    parser.add_argument("--threads", type=count, default=None, help="torch threads during the run (e.g. 1)")
    parser.add_argument("--device", default="cpu", help="where the models run: cpu (default), cuda, cuda:N, mps, "
                                                        "auto (CUDA, else MPS, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse, check everything that can be checked before a model loads, run, print the table.

    Raises :class:`camlab.cli.UsageError` for usage errors; :func:`camlab.cli.main` (which ``camlab evaluate`` and
    ``python -m camlab.evaluate`` go through) turns errors into one line and the exit status."""
    args = build_parser().parse_args(argv)
    if args.scenes is not None and args.scenes < len(LAB_LAYOUTS):
        raise UsageError(f"--scenes {args.scenes}: the lab set needs at least {len(LAB_LAYOUTS)} scenes, one per "
                         f"layout (instances, distractors) {LAB_LAYOUTS}")
    if args.scenes is not None and args.scenes > MAX_SCENES:
        raise UsageError(f"--scenes {args.scenes}: at most {MAX_SCENES} (the set and its maps are held in memory, "
                         f"about 0.2 MB a scene per method); run several seeds and merge the tables instead")
    methods = parse_methods(args.methods) if args.methods is not None else list(DEFAULT_METHODS)
    _check_models(args)
    device = resolve_device(args.device)
    _check_out(args.out)
    table = run(quick=args.quick, datasets=args.datasets, methods=methods, n_scenes=args.scenes, out=args.out,
                lab_model=args.lab_model, imagenet_model=args.photo_model, progress=not args.no_progress,
                threads=args.threads, device=device)
    if not table.rows:
        raise RuntimeError("nothing was measured: " + "; ".join(table.notes[:-1]))
    print(format_table(table))

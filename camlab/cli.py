"""The ``camlab`` command line: explain images and videos; the demo, model zoo, lab and course tools.

Sub-commands: ``explain``, ``demo``, ``models``, ``images``, ``layers``, ``evaluate``, ``train``, ``course`` and ``docs``.

Conventions (those of POSIX tools and argparse):

* ``camlab --version``; ``camlab COMMAND --help``.
* Exit status 0 on success; 1 when something fails while running (an unreadable or truncated image, an output that
  cannot be written or would be overwritten without ``--force``); 2 for a usage error, found before any model loads
  where possible (an unknown option, method, model, layer or device, ``--out`` with several outputs); 130 when
  interrupted (Ctrl-C).
* An error is one line on stderr, ``camlab COMMAND: error: WHAT (WHAT WOULD BE RIGHT)``, never a traceback;
  ``CAMLAB_DEBUG=1`` shows the traceback of an unexpected error.
* Progress bars go to stderr and ``--no-progress`` hides them; results go to stdout.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from camlab.cli_args import (Parser, UsageError, _check_classifier, _check_model, _check_name,  # noqa: F401
                             _positive, parse_device, parse_methods)

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


# --- inputs and outputs -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """One input: ``spec`` as given (a file or a bundled image name), ``name`` for output files, ``video``."""

    spec: str
    name: str
    video: bool


def _source(spec: str) -> Source:
    import camlab
    from camlab.video import is_video

    path = Path(spec)
    if path.is_dir():
        raise IsADirectoryError(f"{spec!r} is a folder; pass the files in it, e.g. '{path / '*.jpg'}' (quoted)")
    if not path.exists() and (path.suffix or spec not in camlab.list_images()):
        raise FileNotFoundError(f"{spec!r} does not exist: it is neither a file nor a bundled image "
                                f"({', '.join(camlab.list_images())})")
    return Source(spec, path.stem, path.exists() and is_video(path))


def expand_inputs(specs: list[str]) -> list[Source]:
    """Files, bundled image names and glob patterns (``'photos/*.jpg'``, expanded in sorted order, so that they
    work when the shell does not expand them, e.g. quoted or on Windows) as :class:`Source` s, without repeats."""
    sources: dict[str, Source] = {}
    for spec in specs:
        pattern = any(c in spec for c in "*?[") and not Path(spec).exists()  # a file may have [ in its name
        matches = sorted(glob.glob(spec)) if pattern else [spec]
        if not matches:
            raise FileNotFoundError(f"no file matches {spec!r}")
        for match in matches:
            sources.setdefault(match, _source(match))
    return list(sources.values())


def _is_folder(value: str) -> bool:
    return Path(value).is_dir() or value.endswith(("/", os.sep)) or Path(value).name in ("", ".", "..")


def _check_suffix(path: Path, video: bool) -> Path:
    from matplotlib.backend_bases import FigureCanvasBase

    from camlab.video import VIDEO_CODECS

    allowed = list(VIDEO_CODECS) if video else [f".{kind}" for kind in FigureCanvasBase.get_supported_filetypes()]
    if path.suffix.lower() not in allowed:
        kind = "a video" if video else "a figure"
        raise UsageError(f"--out {str(path)!r}: {kind} is written as {', '.join(allowed)}; name the file with one "
                         "of these suffixes, or pass a folder")
    return path


def check_overwrite(paths: list[Path], force: bool) -> None:
    """Refuse (exit 1) to overwrite existing files unless ``force``."""
    existing = [path for path in paths if path.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more of the outputs)" if len(existing) > 1 else ""
        raise FileExistsError(f"{existing[0]} exists{more}; pass --force to overwrite, or choose another --out or "
                              "--out-dir")


def make_folders(paths: list[Path]) -> None:
    """Create the folders the outputs go into (an error names the folder that cannot be made)."""
    for folder in sorted({path.parent for path in paths}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(f"cannot create the output folder {str(folder)!r}: {error.strerror or error}") from None


@dataclass(frozen=True)
class Job:
    """One output: ``source`` explained with ``method``, written to ``out`` (and the raw map to ``raw``)."""

    source: Source
    method: str
    out: Path
    raw: Path | None

    @property
    def outputs(self) -> list[Path]:
        return [self.out] if self.raw is None else [self.out, self.raw]


def plan_outputs(sources: list[Source], methods: list[str], args) -> list[Job]:
    """The output of every (input, method) pair: ``--out`` for a single one, else ``NAME-METHOD.png`` (``.mp4`` for
    a video) in ``--out-dir`` (default: the current folder); ``--raw`` adds ``NAME-METHOD.npy`` next to each."""
    if args.out is not None and args.out_dir is not None:
        raise UsageError("give --out (one file) or --out-dir (a folder), not both")
    pairs = [(source, method) for source in sources for method in methods]
    if args.out is not None and not _is_folder(args.out):
        if len(pairs) != 1:
            raise UsageError(f"--out names one file, but there are {len(pairs)} outputs ({len(sources)} input(s) x "
                             f"{len(methods)} method(s)); use --out-dir FOLDER")
        paths = [_check_suffix(Path(args.out), sources[0].video)]
    else:
        folder = Path(args.out if args.out is not None else (args.out_dir or "."))
        paths = [folder / f"{source.name}-{method}{'.mp4' if source.video else '.png'}" for source, method in pairs]
    jobs = [Job(source, method, path, path.with_suffix(".npy") if args.raw else None)
            for (source, method), path in zip(pairs, paths)]
    writers: dict[Path, Source] = {}
    for job in jobs:
        for path in job.outputs:
            if writers.setdefault(path, job.source) != job.source:
                raise UsageError(f"{writers[path].spec!r} and {job.source.spec!r} would both write {str(path)!r}; "
                                 "explain them in separate runs with different --out-dir")
    _check_not_an_input(writers, sources)
    check_overwrite(list(writers), args.force)
    return jobs


def _check_not_an_input(outputs, sources: list[Source]) -> None:
    """An output may not be one of the inputs, ``--force`` or not: writing the video while it is being read truncated
    it (60 frames became 16) and still exited 0."""
    inputs = {Path(source.spec).resolve(): source.spec for source in sources if Path(source.spec).exists()}
    for path in outputs:
        if path.resolve() in inputs:
            raise UsageError(f"the output {str(path)!r} is the input {inputs[path.resolve()]!r}; write the result "
                             "elsewhere (--out OTHER_FILE or --out-dir FOLDER)")


def read_image(spec: str):
    """``camlab.load_image`` with a one-line error for files PIL cannot decode (truncated, decompression bombs over
    twice PIL's ``MAX_IMAGE_PIXELS``) and a one-line warning on stderr, instead of PIL's two-line
    ``DecompressionBombWarning``, for images between once and twice that size (they are loaded)."""
    import warnings

    import camlab
    from PIL import Image

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            image = camlab.load_image(spec)
        for warning in caught:
            if issubclass(warning.category, Image.DecompressionBombWarning):
                print(f"camlab: warning: {spec!r}: {' '.join(str(warning.message).split())} Loading it anyway; "
                      "shrink it to save memory", file=sys.stderr)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return image
    except Image.DecompressionBombError as error:
        raise ValueError(f"{spec!r}: {error} PIL refuses images this large; shrink it first") from None
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (OSError, SyntaxError) as error:  # PIL: truncated or corrupt data (SyntaxError: a broken PNG chunk)
        raise ValueError(f"{spec!r} cannot be decoded, the file may be truncated or corrupt ({error})") from None


def _save(figure, out: Path, write=print) -> None:
    import matplotlib.pyplot as plt

    try:
        figure.savefig(out, dpi=100)
    except OSError as error:
        raise OSError(f"cannot write {str(out)!r}: {error.strerror or error}") from None
    finally:
        plt.close(figure)
    write(f"wrote {out}")


# --- building explainers ------------------------------------------------------------------------------------------

def build_explainers(methods: list[str], model, layer, progress: bool) -> dict:
    """One explainer per method; a layer or method that does not fit the model is a usage error."""
    import camlab

    explainers = {}
    for name in methods:
        try:
            explainers[name] = camlab.build(name, model, layer, progress=progress)
        except (ValueError, TypeError) as error:
            raise UsageError(str(error)) from None
    return explainers


def _print_predictions(model, x, write=print) -> None:
    import camlab

    k = min(5, len(model.camlab.labels))
    for rank, (index, label, probability) in enumerate(camlab.predict(model, x, k=k)[0], start=1):
        write(f"  {rank}. {label:<28} class {index:>4}  p={probability:.3f}")


# --- the commands -------------------------------------------------------------------------------------------------

def explain_image(model, source: Source, jobs: list[Job], explainers: dict, target, write) -> None:
    """Top-5 predictions, then per job a figure (the image and the map over it) and, with ``--raw``, the raw map:
    ``explainer(x, raw=True)[0]``, (h,w) at the layer's resolution, unscaled (input-space methods: (3,H,W))."""
    import numpy as np

    import camlab

    image = read_image(source.spec)
    device = next(model.parameters()).device
    x = camlab.preprocess(image, model).to(device)
    write(f"{model.camlab.name} on {source.spec}:")
    _print_predictions(model, x, write)
    target = target if target is not None else camlab.predict(model, x, k=1)[0][0][0]
    display = image.resize(tuple(x.shape[-1:-3:-1]))
    for job in jobs:
        explainer = explainers[job.method]
        heat = explainer(x, target=target)[0].cpu()
        _save(camlab.show(display, {f"{job.method}: {model.camlab.labels[target]}": heat}), job.out, write)
        if job.raw is not None:
            np.save(job.raw, explainer(x, target=target, raw=True)[0].float().cpu().numpy())
            write(f"wrote {job.raw}")


def explain_video_job(job: Job, explainer, args, write) -> None:
    from camlab.video import explain_video

    result = explain_video(explainer, job.source.spec, job.out, target=args.target, batch_size=args.batch_size,
                           raw=job.raw, progress=not args.no_progress)
    info = result.info
    write(f"{job.method} on {job.source.spec}: {result.frames} frames, {info.width}x{info.height} at "
          f"{info.fps:g} fps")
    write(f"wrote {job.out}" + (f" and {job.raw}" if job.raw is not None else ""))


def _check_target(target: int | None, model) -> None:
    classes = len(model.camlab.labels)
    if target is not None and not 0 <= target < classes:
        raise UsageError(f"--target {target} is not a class of {model.camlab.name}: use 0 to {classes - 1}")


def _check_video_methods(sources: list[Source], explainers: dict) -> None:
    from camlab.methods.base import InputMethod

    for name, explainer in explainers.items():
        if isinstance(explainer, InputMethod) and any(source.video for source in sources):
            raise UsageError(f"method {name!r} returns input-space images, not maps to overlay on a video; "
                             "use a layer method such as gradcam")


def cmd_explain(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from tqdm.auto import tqdm

    import camlab

    methods, device = parse_methods(args.method), parse_device(args.device)
    _check_classifier(args.model)
    sources = expand_inputs(args.inputs)
    jobs = plan_outputs(sources, methods, args)
    model = camlab.load_model(args.model).to(device)
    _check_target(args.target, model)
    explainers = build_explainers(methods, model, args.layer, progress=not args.no_progress)
    _check_video_methods(sources, explainers)
    make_folders([path for job in jobs for path in job.outputs])
    for source in tqdm(sources, desc="explaining", unit="input", leave=False,
                       disable=args.no_progress or len(sources) == 1):
        own = [job for job in jobs if job.source == source]
        if source.video:
            for job in own:
                explain_video_job(job, explainers[job.method], args, tqdm.write)
        else:
            explain_image(model, source, own, explainers, args.target, tqdm.write)


DEMO_OUT = "camlab-demo.png"


def demo_output(value: str | None, force: bool) -> Path:
    """``--out`` of ``camlab demo``: a figure file, or a folder to put ``camlab-demo.png`` in. Without ``--out``
    the demo writes ``camlab-demo.png`` in the current folder and replaces its own earlier figure there, so the
    main command can be run again; a file named with ``--out`` is only replaced with ``--force``."""
    if value is None:
        return Path(DEMO_OUT)
    out = Path(value) / DEMO_OUT if _is_folder(value) else _check_suffix(Path(value), video=False)
    check_overwrite([out], force)
    make_folders([out])
    return out


def cmd_demo(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from tqdm.auto import tqdm

    import camlab

    device = parse_device(args.device)
    out = demo_output(args.out, args.force)
    model = camlab.load_model("efficientnet_lite0").to(device)
    image = read_image(args.image)
    x = camlab.preprocess(image, model).to(device)
    print(f"efficientnet_lite0 (offline ImageNet model) on the bundled image {args.image!r}, top-5:")
    _print_predictions(model, x)
    target, label, _ = camlab.predict(model, x, k=1)[0][0]
    methods = camlab.methods.ordered("demo")
    print(f"explaining class {target} ({label!r}, the top-1) with the {len(methods)} methods of the demo "
          f"selection ({len(camlab.METHODS)} registered; `camlab explain --method NAME` runs any of them)")
    maps = {}
    for name in tqdm(methods, desc="explaining", disable=args.no_progress):
        explainer = camlab.build(name, model, progress=False)
        if isinstance(explainer, camlab.methods.InputMethod):  # input-space: a percentile-clipped image
            heat = camlab.viz.gradient_image(explainer(x, target=target, raw=True)[0].cpu())
        else:
            heat = explainer(x, target=target)[0].cpu()
        maps[camlab.METHODS[name].__name__] = heat
    display = image.resize(tuple(x.shape[-1:-3:-1]))
    figure = camlab.show(display, maps, ncols=min(5, len(maps) + 1))
    figure.suptitle(f"{args.image}: maps for class {target} ({label}), the model's top-1")
    _save(figure, out)


def cmd_models(args) -> None:
    import camlab

    for name, description in camlab.list_models().items():
        print(f"{name:<20} {description}")


def cmd_images(args) -> None:
    import camlab

    print("\n".join(camlab.list_images()))


def cmd_layers(args) -> None:
    import camlab

    model = camlab.load_model(_check_model(args.model))
    for row in camlab.layers(model, spatial_only=args.spatial):
        print(row)


def cmd_evaluate(args) -> None:
    """Forwards every option, ``--device`` and ``--no-progress`` included, to ``camlab.evaluate``'s own parser."""
    from camlab import evaluate

    evaluate.main([option for option in args.options if option != "--"])


def cmd_docs(args) -> None:
    from camlab import docsite

    html, seconds = docsite.build(args.out, strict=not args.no_strict, quiet=not args.verbose)
    print(f"{html / 'index.html'} ({seconds:.0f} s)")


def cmd_train(args) -> None:
    from camlab.lab.train import train_model
    from camlab.lab.zoo import LAB_MODELS

    _check_name("lab model", args.name, LAB_MODELS, "camlab models")
    metrics = train_model(args.name, seed=args.seed, progress=not args.no_progress)
    print(", ".join(f"{key}={value}" for key, value in metrics.items()))


# --- the parser ---------------------------------------------------------------------------------------------------

def _add_run_options(parser: argparse.ArgumentParser, force: bool = True) -> None:
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:N, mps")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if force:
        parser.add_argument("--force", action="store_true", help="overwrite existing output files")


def _add_explain(commands) -> None:
    explain = commands.add_parser(
        "explain", help="explain images or videos: an overlay figure (video) per input and method",
        description="Explain images (files, bundled names, glob patterns) and videos (.mp4, .avi, .mov, ...). Each "
                    "input and method gives NAME-METHOD.png (a video: NAME-METHOD.mp4, every frame overlaid).")
    explain.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image or video files, bundled image names (see `camlab images`), glob patterns")
    explain.add_argument("--model", default="efficientnet_lite0", help="model name (see `camlab models`)")
    explain.add_argument("--method", action="append", metavar="NAME[,NAME...]",
                         help="method(s), repeatable or comma-separated, e.g. gradcam,scorecam (default: gradcam)")
    explain.add_argument("--layer", default=None, help="dotted layer name (see `camlab layers MODEL`); default: last")
    explain.add_argument("--target", type=int, default=None, help="class index; default: the top-1 prediction")
    explain.add_argument("--out", default=None, help="output file for a single input and method, or a folder")
    explain.add_argument("--out-dir", default=None, help="folder for NAME-METHOD files (default: current folder)")
    explain.add_argument("--raw", action="store_true",
                         help="also write the raw maps, NAME-METHOD.npy: unscaled, at the layer's resolution")
    explain.add_argument("--batch-size", type=_positive, default=16, help="video frames per forward pass")
    _add_run_options(explain)
    explain.set_defaults(run=cmd_explain)


def build_parser() -> argparse.ArgumentParser:
    import camlab

    parser = Parser(prog="camlab", description="Class activation maps for PyTorch models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {camlab.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_explain(commands)

    demo = commands.add_parser("demo", help="top-5 predictions and the demo selection's maps for a bundled image, "
                                            "offline")
    demo.add_argument("--image", default="cat", help="bundled image name (default: cat)")
    demo.add_argument("--out", default=None, help="output figure, or a folder (default: camlab-demo.png in the "
                                                  "current folder, replaced on every run)")
    _add_run_options(demo)
    demo.set_defaults(run=cmd_demo)

    commands.add_parser("models", help="list the model zoo").set_defaults(run=cmd_models)
    commands.add_parser("images", help="list the bundled images").set_defaults(run=cmd_images)

    layers = commands.add_parser("layers", help="list a model's layers with their output shapes")
    layers.add_argument("model")
    layers.add_argument("--spatial", action="store_true", help="only layers with (N,C,H,W) outputs")
    layers.set_defaults(run=cmd_layers)

    evaluate = commands.add_parser(
        "evaluate", help="the metrics table on the synthetic lab and the ImageNet model",
        description="Options are those of `python -m camlab.evaluate` (--quick, --datasets, --methods, --scenes, "
                    "--out, --threads); `camlab evaluate -- --help` lists them.")
    evaluate.add_argument("options", nargs=argparse.REMAINDER, help="options for camlab.evaluate")
    evaluate.set_defaults(run=cmd_evaluate)

    train = commands.add_parser("train", help="retrain a lab model (seeded) and write its weights to data/weights")
    train.add_argument("name", help="lab model name, e.g. lab_gap")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    train.set_defaults(run=cmd_train)

    docs = commands.add_parser("docs", help="build the website: course chapters, user guide, API reference, glossary")
    docs_commands = docs.add_subparsers(dest="docs_command", required=True)
    docs_build = docs_commands.add_parser(
        "build", help="build the site offline from the stored notebook outputs, warnings as errors (needs .[docs])")
    docs_build.add_argument("--out", default="build/docs", help="output folder; the site is OUT/html (default: "
                                                                 "build/docs)")
    docs_build.add_argument("--no-strict", action="store_true", help="report warnings without failing")
    docs_build.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    docs_build.set_defaults(run=cmd_docs)

    from camlab.course.cli import register as register_course

    register_course(commands)
    return parser


# --- running ------------------------------------------------------------------------------------------------------

def _one_line(error: BaseException) -> str:
    """An exception as one line: its message (an OSError's reason and file; a KeyError's text without quotes),
    prefixed with its type when it is not one of the errors camlab raises on purpose."""
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    elif isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    if not isinstance(error, (UsageError, ValueError, TypeError, OSError, RuntimeError, KeyError)):
        text = f"{type(error).__name__}: {text} (CAMLAB_DEBUG=1 shows the traceback)"
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run the ``camlab`` command line; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["evaluate"] and argv[1:2] != ["--"]:  # its options belong to camlab.evaluate's own parser
        argv = ["evaluate", "--", *argv[1:]]
    prog = "camlab"
    try:
        args, unknown = build_parser().parse_known_args(argv)
        prog = f"camlab {args.command}"
        if unknown:  # reported by the sub-command they were given to, as argparse does not
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (see `{prog} --help`)")
        args.run(args)
    except SystemExit as exit:  # --help and --version (status 0), and the parsers of evaluate and course
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(f"{prog}: error: {exit.code}", file=sys.stderr)
        return EXIT_FAILURE
    except UsageError as error:
        print(f"{error.prog or prog}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if os.environ.get("CAMLAB_DEBUG", "") not in ("", "0"):
            raise
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())

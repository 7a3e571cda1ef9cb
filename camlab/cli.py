"""The ``camlab`` command: ``explain``, ``demo``, ``models``, ``layers``, ``evaluate``, ``train``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: methods drawn by ``camlab demo`` (those registered), in the order of the course
DEMO_METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "scorecam", "eigencam",
                "guided_backprop", "guided_gradcam")


def _print_predictions(model, x) -> None:
    import camlab

    for rank, (index, label, probability) in enumerate(camlab.predict(model, x)[0], start=1):
        print(f"  {rank}. {label:<28} class {index:>4}  p={probability:.3f}")


def _save(figure, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")


def cmd_explain(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import camlab

    model = camlab.load_model(args.model)
    image = camlab.load_image(args.image)
    x = camlab.preprocess(image, model)
    print(f"{args.model} on {args.image}:")
    _print_predictions(model, x)
    heat = camlab.explain(model, x, method=args.method, layer=args.layer, target=args.target)
    target = args.target if args.target is not None else camlab.predict(model, x, k=1)[0][0][0]
    title = f"{args.method}: {model.camlab.labels[target]}"
    display = image.resize(tuple(x.shape[-1:-3:-1]))
    _save(camlab.show(display, {title: heat[0]}), Path(args.out))


def cmd_demo(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from tqdm.auto import tqdm

    import camlab

    model = camlab.load_model("efficientnet_lite0")
    image = camlab.load_image(args.image)
    x = camlab.preprocess(image, model)
    print(f"efficientnet_lite0 (offline ImageNet model) on the bundled image {args.image!r}, top-5:")
    _print_predictions(model, x)
    target = camlab.predict(model, x, k=1)[0][0][0]
    methods = [name for name in DEMO_METHODS if name in camlab.METHODS]
    maps = {}
    for name in tqdm(methods, desc="explaining", disable=args.no_progress):
        options = {"progress": False} if "progress" in _parameters(camlab.METHODS[name]) else {}
        maps[camlab.METHODS[name].__name__] = camlab.explain(model, x, method=name, target=target, **options)[0]
    display = image.resize(tuple(x.shape[-1:-3:-1]))
    _save(camlab.show(display, maps, ncols=min(5, len(maps) + 1)), Path(args.out))


def _parameters(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def cmd_models(args) -> None:
    import camlab

    for name, description in camlab.list_models().items():
        print(f"{name:<20} {description}")


def cmd_layers(args) -> None:
    import camlab

    model = camlab.load_model(args.model)
    for row in camlab.layers(model, spatial_only=args.spatial):
        print(row)


def cmd_evaluate(args) -> None:
    from camlab import evaluate

    evaluate.main([option for option in args.options if option != "--"])


def cmd_train(args) -> None:
    from camlab.lab.train import train_model

    metrics = train_model(args.name, seed=args.seed)
    print(", ".join(f"{key}={value}" for key, value in metrics.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camlab", description="Class activation maps for PyTorch models.")
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="explain one image and write an overlay figure")
    explain.add_argument("image", help="a bundled image name (see `camlab images`) or an image file")
    explain.add_argument("--model", default="efficientnet_lite0", help="model name (see `camlab models`)")
    explain.add_argument("--method", default="gradcam", help="method name, e.g. gradcam, cam, gradcam++, scorecam")
    explain.add_argument("--layer", default=None, help="dotted layer name (see `camlab layers MODEL`); default: last")
    explain.add_argument("--target", type=int, default=None, help="class index; default: the top-1 prediction")
    explain.add_argument("--out", default="camlab-explain.png", help="output PNG")
    explain.set_defaults(run=cmd_explain)

    demo = commands.add_parser("demo", help="top-5 predictions and every method's map for a bundled image, offline")
    demo.add_argument("--image", default="cat", help="bundled image name (default: cat)")
    demo.add_argument("--out", default="camlab-demo.png", help="output PNG")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.set_defaults(run=cmd_demo)

    commands.add_parser("models", help="list the model zoo").set_defaults(run=cmd_models)
    images = commands.add_parser("images", help="list the bundled images")
    images.set_defaults(run=lambda args: print("\n".join(__import__("camlab").list_images())))

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
    train.set_defaults(run=cmd_train)

    from camlab.course.cli import register as register_course

    register_course(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["evaluate"]:  # its options belong to camlab.evaluate's own parser
        argv = ["evaluate", "--", *argv[1:]] if argv[1:2] != ["--"] else argv
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError, RuntimeError) as error:
        print(f"camlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The speed goals in one run: Score-CAM against its physical limit and pytorch-grad-cam, the input-space methods
against Captum, Grad-CAM against a bare forward pass. CPU (or whatever torch uses by default), interleaved rounds;
every ratio is taken round by round and reported as median [min, max].

    python benchmarks/bench_speed.py                   # about 5 minutes on a quiet 2-core CPU (estimated)
    python benchmarks/bench_speed.py --quick           # 1-2 rounds, direction only
    python benchmarks/benchmark.py --suite speed       # the same

Score-CAM's physical limit is one inference pass per *distinct* mask (channels whose activation is constant have no
mask, identical channels share one): the limit ratio is camlab's time / (distinct masks x the model's best time per
image, over batch sizes 1..64, for the model as given, contiguous input, ``torch.inference_mode``). Models:
efficientnet_lite0 (offline ImageNet weights, the cat photo, layer ``bn2``, 1280 x 7 x 7) and torchvision
ResNet-18 with random weights (seed 0, the same input, ``layer4``, 512 x 7 x 7). camlab runs with its defaults
(``batch_size=None``: measured and cached on the first call, which is the untimed warm-up round; ``fold=True``);
pytorch-grad-cam with its defaults (batch 16; its unstoppable tqdm bar goes to a discarded buffer).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import warnings
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_samples, medians, round_ratios  # noqa: E402

import camlab  # noqa: E402
from bench_methods import reference_scorecam  # noqa: E402
from camlab.methods.perturbation import ScoreCAM  # noqa: E402

TARGET = 285  # Egyptian cat
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def quiet(run):
    def wrapped():
        with contextlib.redirect_stderr(io.StringIO()):
            return run()
    return wrapped


def _inference(model, x):
    def run():
        with torch.inference_mode():
            model(x)
    return run


def distinct_masks(model, layer: str, x: torch.Tensor) -> int:
    captured = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return len(ScoreCAM._distinct_channels(captured[0][0])[1])


def scorecam_run(name, model, layer, x, rounds: int, check: bool) -> list[tuple[str, tuple, tuple | None]]:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = camlab.ScoreCAM(model, layer=layer, progress=False)
    target_layer = model.get_submodule(layer)

    def peer():
        with pgc.ScoreCAM(model=model, target_layers=[target_layer]) as cam:
            cam(input_tensor=x, targets=[ClassifierOutputTarget(TARGET)])

    cases = {"camlab ScoreCAM": lambda: ours(x, target=TARGET), "pytorch-grad-cam ScoreCAM": quiet(peer)}
    for batch in BATCHES:
        cases[f"forward b={batch}"] = _inference(model, x.repeat(batch, 1, 1, 1))
    samples = interleaved_samples(cases, rounds=rounds, warmup=1)
    count = distinct_masks(model, layer, x)
    best = [min(samples[f"forward b={b}"][r] / b for b in BATCHES) for r in range(rounds)]
    limit = [count * seconds for seconds in best]
    per_image = {b: medians({b: [s / b for s in samples[f"forward b={b}"]]})[b] * 1e3 for b in BATCHES}
    print(f"**Score-CAM, {name}, layer {layer}**: {count} distinct masks; forward ms/image by batch: "
          + ", ".join(f"{b}: {ms:.1f}" for b, ms in per_image.items()))
    for case in ("camlab ScoreCAM", "pytorch-grad-cam ScoreCAM"):
        print(f"- {case}: median {medians(samples)[case]:.2f} s")
    print(f"- physical limit (distinct masks x best ms/image): median {medians({'l': limit})['l']:.2f} s\n")
    if check:
        raw = ours(x, target=TARGET, raw=True)
        expected = reference_scorecam(model, x, TARGET, layer)
        error = float((raw - expected).abs().max() / expected.abs().max())
        print(f"- camlab vs one-mask-at-a-time reference: max |difference| / max |map| = {error:.1e}\n")
    peer_goal = 5.0 if name == "efficientnet_lite0" else 2.0
    return [(f"Score-CAM {name}: camlab / physical limit", round_ratios(samples["camlab ScoreCAM"], limit),
             (1.0, "max")),
            (f"Score-CAM {name}: pytorch-grad-cam / camlab",
             round_ratios(samples["pytorch-grad-cam ScoreCAM"], samples["camlab ScoreCAM"]), (peer_goal, "min"))]


def input_space_run(model, x, rounds: int) -> list[tuple[str, tuple, tuple | None]]:
    from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, Saliency

    layer = model.get_submodule("bn2")
    xg = x.clone().requires_grad_()
    targets = [TARGET] * len(x)
    pairs = {
        "gradient": (camlab.Gradient(model), lambda p=Saliency(model): p.attribute(xg, target=targets, abs=False)),
        "deconvnet": (camlab.Deconvnet(model), lambda p=Deconvolution(model): p.attribute(xg, target=targets)),
        "guided_backprop": (camlab.GuidedBackprop(model),
                            lambda p=GuidedBackprop(model): p.attribute(xg, target=targets)),
        "guided_gradcam": (camlab.GuidedGradCAM(model, layer="bn2"),
                           lambda p=GuidedGradCam(model, layer): p.attribute(xg, target=targets)),
    }
    cases = {}
    for name, (ours, theirs) in pairs.items():
        cases[f"camlab {name}"] = lambda m=ours: m(x, target=targets)
        cases[f"Captum {name}"] = theirs
    samples = interleaved_samples(cases, rounds=rounds, warmup=2)
    return [(f"{name}, batch {len(x)}: camlab / Captum",
             round_ratios(samples[f"camlab {name}"], samples[f"Captum {name}"]), (1.05, "max")) for name in pairs]


def gradcam_run(model, x, rounds: int) -> list[tuple[str, tuple, tuple | None]]:
    ours = camlab.GradCAM(model, layer="bn2")
    cases = {"forward (no_grad)": _inference(model, x), "camlab GradCAM": lambda: ours(x, target=TARGET)}
    samples = interleaved_samples(cases, rounds=rounds, warmup=2)
    goal = 1.2 if len(x) == 1 else 1.1
    return [(f"Grad-CAM, batch {len(x)}: camlab / bare forward",
             round_ratios(samples["camlab GradCAM"], samples["forward (no_grad)"]), (goal, "max"))]


def summary(results) -> str:
    lines = ["| ratio | median | range | goal | met |", "|---|---:|---|---:|:---:|"]
    for name, (median, low, high), goal in results:
        bound, direction = goal
        met = median <= bound if direction == "max" else median >= bound
        sign = "≤" if direction == "max" else "≥"
        lines.append(f"| {name} | {median:.2f} | {low:.2f}-{high:.2f} | {sign} {bound:g} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def run_speed(rounds: int = 5, slow_rounds: int = 3, check: bool = True,
              parts: tuple[str, ...] = ("gradcam", "input", "scorecam")) -> None:
    warnings.filterwarnings("ignore")
    efficientnet = camlab.load_model("efficientnet_lite0")
    x = camlab.preprocess(camlab.load_image("cat"), efficientnet)
    results = []
    for batch in (1, 8):
        done = len(results)
        many = 3 * rounds if batch == 1 else rounds
        if "gradcam" in parts:
            results += gradcam_run(efficientnet, x.repeat(batch, 1, 1, 1), rounds=many)
        if "input" in parts:
            results += input_space_run(efficientnet, x.repeat(batch, 1, 1, 1), rounds=many)
        if len(results) > done:
            print(summary(results[done:]) + "\n")
    if "scorecam" in parts:
        torch.manual_seed(0)
        resnet = torchvision.models.resnet18().eval()
        results += scorecam_run("efficientnet_lite0", efficientnet, "bn2", x, slow_rounds, check)
        results += scorecam_run("resnet18 (random weights)", resnet, "layer4", x, slow_rounds, check)
    print("**Speed goals** (per-round ratios, median and range)\n")
    print(summary(results))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds for the fast cases (x3 at batch 1)")
    parser.add_argument("--slow-rounds", type=int, default=3, help="rounds for Score-CAM")
    parser.add_argument("--quick", action="store_true", help="1 fast round x3, 1 Score-CAM round, no reference")
    parser.add_argument("--only", nargs="+", choices=("gradcam", "input", "scorecam"),
                        default=("gradcam", "input", "scorecam"), help="run only these parts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress visible when redirected to a file
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    if args.quick:
        run_speed(rounds=1, slow_rounds=1, check=False, parts=tuple(args.only))
    else:
        run_speed(rounds=args.rounds, slow_rounds=args.slow_rounds, parts=tuple(args.only))


if __name__ == "__main__":
    main()

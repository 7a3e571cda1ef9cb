"""Every camlab method against the peers that have it, on efficientnet_lite0 (224x224, layer ``bn2``, 1280 x 7 x 7),
CPU, batch 1, interleaved rounds, medians; plus Score-CAM's difference to the paper's algorithm.

    python benchmarks/bench_methods.py [--rounds 5] [--slow-rounds 2]
    python benchmarks/benchmark.py --suite methods

Peers are asked for the same map (target class 285, last layer); progress bars are off where a peer allows it.
pytorch-grad-cam's Score-CAM and Ablation-CAM print progress bars that cannot be turned off (sent to /dev/null here).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved, table  # noqa: E402

import camlab  # noqa: E402
from camlab.methods.registry import layer_for  # noqa: E402

LAYER = "bn2"
TARGET = 285  # Egyptian cat


def quiet(run):
    """Run with stderr discarded (peers' unstoppable tqdm bars)."""
    def wrapped():
        with contextlib.redirect_stderr(io.StringIO()):
            return run()
    return wrapped


def fast_cases(model, x) -> dict:
    import pytorch_grad_cam as pgc
    from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, Occlusion, Saliency
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam import methods as tcm

    layer = dict(model.named_modules())[LAYER]
    pgc_targets = [ClassifierOutputTarget(TARGET)]
    cases = {"forward (no_grad)": lambda: _forward(model, x)}

    def ours(name, **options):
        method = camlab.build(name, model, layer_for(name, LAYER), **options)
        return lambda: method(x, target=TARGET)

    def pgc_case(cls):
        def run():
            with cls(model=model, target_layers=[layer]) as cam:
                cam(input_tensor=x, targets=pgc_targets)
        return run

    def torchcam_case(cls, **options):
        def run():
            with cls(model, target_layer=LAYER, **options) as extractor:
                extractor(TARGET, model(x))
        return run

    for name, pgc_cls, tc_cls in (
        ("gradcam++", pgc.GradCAMPlusPlus, tcm.GradCAMpp),
        ("xgradcam", pgc.XGradCAM, tcm.XGradCAM),
        ("layercam", pgc.LayerCAM, tcm.LayerCAM),
        ("hirescam", pgc.HiResCAM, None),
        ("eigencam", pgc.EigenCAM, None),
        ("smoothgradcam++", None, tcm.SmoothGradCAMpp),
        ("random", None, None),
    ):
        cases[f"camlab {name}"] = ours(name)
        if pgc_cls is not None:
            cases[f"pytorch-grad-cam {pgc_cls.__name__}"] = pgc_case(pgc_cls)
        if tc_cls is not None:
            options = {"num_samples": 8} if tc_cls is tcm.SmoothGradCAMpp else {}
            cases[f"torchcam {tc_cls.__name__}"] = torchcam_case(tc_cls, **options)
    xg = x.clone().requires_grad_()
    for name, captum_cls in (("gradient", Saliency), ("deconvnet", Deconvolution),
                             ("guided_backprop", GuidedBackprop)):
        cases[f"camlab {name}"] = ours(name)
        peer = captum_cls(model)
        cases[f"Captum {captum_cls.__name__}"] = (
            (lambda p=peer: p.attribute(xg, target=TARGET, abs=False)) if captum_cls is Saliency
            else (lambda p=peer: p.attribute(xg, target=TARGET)))
    cases["camlab guided_gradcam"] = ours("guided_gradcam")
    guided_gradcam = GuidedGradCam(model, layer)
    cases["Captum GuidedGradCam"] = lambda: guided_gradcam.attribute(xg, target=TARGET)
    cases["camlab occlusion (32/16)"] = ours("occlusion", progress=False)
    occlusion = Occlusion(model)
    cases["Captum Occlusion (32/16)"] = lambda: occlusion.attribute(
        x, target=TARGET, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), baselines=0.0, perturbations_per_eval=32)
    return cases


def slow_cases(model, x) -> dict:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = dict(model.named_modules())[LAYER]
    targets = [ClassifierOutputTarget(TARGET)]
    scorecam = camlab.build("scorecam", model, LAYER, progress=False)
    ablation = camlab.build("ablationcam", model, LAYER, progress=False)

    def pgc_case(cls):
        def run():
            with cls(model=model, target_layers=[layer]) as cam:
                cam(input_tensor=x, targets=targets)
        return quiet(run)

    return {
        "forward (no_grad)": lambda: _forward(model, x),
        "camlab scorecam": lambda: scorecam(x, target=TARGET),
        "pytorch-grad-cam ScoreCAM": pgc_case(pgc.ScoreCAM),
        "camlab ablationcam": lambda: ablation(x, target=TARGET),
        "pytorch-grad-cam AblationCAM": pgc_case(pgc.AblationCAM),
    }


def reference_scorecam(model, x, target, layer=LAYER):
    """The authors' code (Score-CAM's probability form), one channel at a time (as tests/test_methods_peers.py)."""
    captured = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    activations = captured[0][0]
    total = torch.zeros(activations.shape[1:])
    with torch.no_grad():
        for channel in activations:
            saliency = F.interpolate(channel[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
            if saliency.max() == saliency.min():
                continue
            mask = (saliency - saliency.min()) / (saliency.max() - saliency.min())
            total += F.softmax(model(x * mask), dim=1)[0, target] * channel
    return F.relu(total)[None]


def _forward(model, x):
    with torch.no_grad():
        model(x)


def ratios(medians: dict, pairs: list[tuple[str, str]]) -> str:
    lines = []
    for ours, peer in pairs:
        if ours in medians and peer in medians:
            lines.append(f"- {peer} / {ours}: {medians[peer] / medians[ours]:.2f}x")
    return "\n".join(lines)


def run_methods(model, x, rounds: int = 5, slow_rounds: int = 2) -> None:
    warnings.filterwarnings("ignore")
    medians = interleaved(fast_cases(model, x), rounds=rounds, warmup=1)
    print(table(medians, "forward (no_grad)", f"Every method, batch 1, {rounds} rounds"))
    print()
    slow = interleaved(slow_cases(model, x), rounds=slow_rounds, warmup=0)
    print(table(slow, "forward (no_grad)", f"Score-CAM and Ablation-CAM, batch 1, {slow_rounds} rounds"))
    print()
    print("camlab speed-up (peer median / camlab median):")
    print(ratios({**medians, **slow}, [
        ("camlab scorecam", "pytorch-grad-cam ScoreCAM"),
        ("camlab ablationcam", "pytorch-grad-cam AblationCAM"),
        ("camlab gradcam++", "pytorch-grad-cam GradCAMPlusPlus"), ("camlab gradcam++", "torchcam GradCAMpp"),
        ("camlab xgradcam", "pytorch-grad-cam XGradCAM"), ("camlab xgradcam", "torchcam XGradCAM"),
        ("camlab layercam", "pytorch-grad-cam LayerCAM"), ("camlab layercam", "torchcam LayerCAM"),
        ("camlab hirescam", "pytorch-grad-cam HiResCAM"), ("camlab eigencam", "pytorch-grad-cam EigenCAM"),
        ("camlab smoothgradcam++", "torchcam SmoothGradCAMpp"),
        ("camlab gradient", "Captum Saliency"), ("camlab deconvnet", "Captum Deconvolution"),
        ("camlab guided_backprop", "Captum GuidedBackprop"), ("camlab guided_gradcam", "Captum GuidedGradCam"),
        ("camlab occlusion (32/16)", "Captum Occlusion (32/16)"),
    ]))
    ours = camlab.build("scorecam", model, LAYER, progress=False)(x, target=TARGET, raw=True)
    reference = reference_scorecam(model, x, TARGET)
    scaled = camlab.scale(camlab.upsample(ours, x.shape[-2:])) - camlab.scale(camlab.upsample(reference, x.shape[-2:]))
    print(f"\nScore-CAM vs the paper's algorithm (one channel at a time): max abs diff raw "
          f"{(ours - reference).abs().max():.2e} (raw max {reference.abs().max():.3g}), "
          f"on the [0,1] map {scaled.abs().max():.2e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slow-rounds", type=int, default=2)
    args = parser.parse_args(argv)
    model = camlab.load_model("efficientnet_lite0")
    x = camlab.preprocess(camlab.load_image("cat"), model)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"efficientnet_lite0, 224x224, layer {LAYER}\n")
    run_methods(model, x, rounds=args.rounds, slow_rounds=args.slow_rounds)


if __name__ == "__main__":
    main()

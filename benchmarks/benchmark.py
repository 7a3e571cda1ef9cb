"""camlab's speed against a bare forward pass and the peer libraries, measured in one run, interleaved, medians.

    python benchmarks/benchmark.py                 # Grad-CAM, batch 1 and 8
    python benchmarks/benchmark.py --suite methods # every method (see bench_methods.py)
    python benchmarks/benchmark.py --suite speed   # every speed goal as a ratio (see bench_speed.py)
    python benchmarks/benchmark.py --suite all

Model: efficientnet_lite0 (offline ImageNet), 224x224, layer ``bn2`` (the last, 1280 x 7 x 7), CPU. Each peer is
asked for the same map: pytorch-grad-cam returns it upsampled and scaled (numpy), torchcam scaled at the layer's
resolution, Captum raw at the layer's resolution, camlab upsampled and scaled (torch).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved, table  # noqa: E402

import camlab  # noqa: E402

LAYER = "bn2"
TARGET = 285  # Egyptian cat


def inputs(model, batch: int) -> torch.Tensor:
    x = camlab.preprocess(camlab.load_image("cat"), model)
    return x.repeat(batch, 1, 1, 1)


def gradcam_cases(model, x) -> dict:
    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAM as TorchcamGradCAM

    layer = dict(model.named_modules())[LAYER]
    targets = [TARGET] * len(x)
    ours = camlab.GradCAM(model, layer=LAYER)
    pgc = PgcGradCAM(model=model, target_layers=[layer])
    pgc_targets = [ClassifierOutputTarget(TARGET) for _ in targets]
    captum = LayerGradCam(model, layer)

    def forward():
        with torch.no_grad():
            model(x)

    def torchcam():
        with TorchcamGradCAM(model, target_layer=LAYER) as extractor:
            scores = model(x)
            extractor(targets, scores)

    return {
        "forward (no_grad)": forward,
        "camlab GradCAM": lambda: ours(x, target=targets),
        "pytorch-grad-cam GradCAM": lambda: pgc(input_tensor=x, targets=pgc_targets),
        "torchcam GradCAM": torchcam,
        "Captum LayerGradCam": lambda: captum.attribute(x, target=targets, relu_attributions=True),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("gradcam", "methods", "speed", "all"), default="gradcam")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = camlab.load_model("efficientnet_lite0")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; efficientnet_lite0, 224x224, layer {LAYER}\n")
    if args.suite in ("gradcam", "all"):
        for batch, rounds in ((1, args.rounds), (8, max(5, args.rounds // 2))):
            x = inputs(model, batch)
            medians = interleaved(gradcam_cases(model, x), rounds=rounds)
            print(table(medians, "forward (no_grad)", f"Grad-CAM, batch {batch}, {rounds} rounds"))
            peers = [v for k, v in medians.items() if k not in ("forward (no_grad)", "camlab GradCAM")]
            print(f"\ncamlab / fastest peer: {medians['camlab GradCAM'] / min(peers):.2f}\n")
    if args.suite in ("speed", "all"):
        from bench_speed import run_speed

        run_speed()
    if args.suite in ("methods", "all"):
        from bench_methods import run_methods

        run_methods(model, inputs(model, 1), rounds=args.rounds)


if __name__ == "__main__":
    main()

"""The methods and options camlab took from pytorch-grad-cam 1.5.7, against pytorch-grad-cam itself: efficientnet_lite0,
224x224, batch 8 (the cat photo eight times), layer ``bn2`` (1280 x 7 x 7), CPU, interleaved rounds. Reported per
method: the median of each side and the median and range over rounds of camlab's time / the peer's time (both ran
within seconds of each other in every round, so machine noise hits them alike; on a shared machine the range is
what to quote).

    python benchmarks/bench_peer_methods.py [--rounds 5] [--batch 8] [--layer bn2]
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_samples, medians, round_ratios  # noqa: E402

import camlab  # noqa: E402

TARGET = 285  # Egyptian cat

#: camlab method (name, options) -> pytorch-grad-cam class name and call options
PAIRS = [
    (("gradcam_elementwise", {}), ("GradCAMElementWise", {})),
    (("eigengradcam", {}), ("EigenGradCAM", {})),
    (("kpcacam", {}), ("KPCA_CAM", {})),
    (("fem", {}), ("FEM", {})),
    (("shapleycam", {}), ("ShapleyCAM", {})),
    (("finercam", {}), ("FinerCAM", {})),
    (("gradcam", {"aug_smooth": True}), ("GradCAM", {"aug_smooth": True})),
    (("gradcam", {"eigen_smooth": True}), ("GradCAM", {"eigen_smooth": True})),
]


def label(name: str, options: dict) -> str:
    return name + "".join(f" {key}" for key in options)


def cases(model, x, layer: str) -> dict:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer]
    result = {}
    for (name, options), (peer, call) in PAIRS:
        ours = camlab.build(name, model, layer, **options)
        target = None if name == "finercam" else TARGET
        result[f"camlab {label(name, options)}"] = lambda ours=ours, target=target: ours(x, target=target)
        targets = None if peer == "FinerCAM" else [ClassifierOutputTarget(TARGET)] * x.shape[0]

        def run(cls=getattr(pgc, peer), call=call, targets=targets):
            with cls(model=model, target_layers=[module]) as cam:
                cam(input_tensor=x, targets=targets, **call)
        result[f"pytorch-grad-cam {peer}{''.join(f' {key}' for key in call)}"] = run
    return result


def report(samples: dict) -> str:
    lines = ["| method | camlab median (ms) | pytorch-grad-cam median (ms) | camlab / peer, median [min, max] |",
             "|---|---:|---:|---:|"]
    middle = medians(samples)
    for (name, options), (peer, call) in PAIRS:
        ours, theirs = f"camlab {label(name, options)}", f"pytorch-grad-cam {peer}{''.join(f' {k}' for k in call)}"
        median, low, high = round_ratios(samples[ours], samples[theirs])
        lines.append(f"| {label(name, options)} | {middle[ours] * 1e3:.0f} | {middle[theirs] * 1e3:.0f} | "
                     f"{median:.2f} [{low:.2f}, {high:.2f}] |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layer", default="bn2")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    model = camlab.load_model("efficientnet_lite0")
    x = camlab.preprocess(camlab.load_image("cat"), model).repeat(args.batch, 1, 1, 1)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; efficientnet_lite0, "
          f"224x224, batch {args.batch}, layer {args.layer}, {args.rounds} interleaved rounds\n")
    samples = interleaved_samples(cases(model, x, args.layer), rounds=args.rounds, warmup=1)
    print(report(samples))


if __name__ == "__main__":
    main()

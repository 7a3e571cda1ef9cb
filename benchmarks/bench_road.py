"""ROAD and ARCC: camlab against pytorch-grad-cam 1.5.7 on the same maps, interleaved rounds, the ratio per round
reported as median [min, max].

    python benchmarks/bench_road.py                 # batch 2, 5 rounds (a few minutes on a quiet 2-core CPU)
    python benchmarks/bench_road.py --batch 8       # the issue's batch size (about 4x longer)

Model: efficientnet_lite0 (offline ImageNet weights) on the cat photo repeated ``--batch`` times, class 285. Maps:
camlab's Grad-CAM of ``bn2`` plus a 1e-4 seeded jitter (so that no two pixels tie: with ties pytorch-grad-cam
removes every tied pixel, see ``camlab.metrics.road``), rescaled to [0, 1]; the same float32 maps go to both.
Cases: ROAD combined at shares 0.1..0.9 (``camlab.metrics.road`` vs ``ROADCombined()``, noise 0.01 on both) and
ARCC (``camlab.metrics.arcc`` vs ``ARCC(GradCAM)``, Grad-CAM of ``bn2`` on the class probability on both).
Most of the time on both sides is the sparse solve of the imputation (one per image and share and order) and
``2 x shares x batch`` forward passes.

Measured (shared 2-core x86_64 CPU under load, OMP_NUM_THREADS=1, batch 2, 5 rounds): camlab / pytorch-grad-cam
ROAD 0.34 [0.27, 0.42] (medians 19.7 s vs 52.4 s), ARCC 0.36 [0.30, 0.40] (9.7 s vs 27.3 s); batch 8, 2 rounds:
ROAD 0.40 [0.24, 0.56] (74 s vs 178 s), ARCC 0.33 [0.28, 0.38] (21 s vs 60 s).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_samples, medians, round_ratios  # noqa: E402

import camlab  # noqa: E402
from camlab.metrics import arcc, road  # noqa: E402

LAYER = "bn2"
TARGET = 285  # Egyptian cat


def setup(batch: int):
    model = camlab.load_model("efficientnet_lite0")
    x = camlab.preprocess(camlab.load_image("cat"), model).repeat(batch, 1, 1, 1)
    heat = camlab.GradCAM(model, LAYER)(x, TARGET)
    heat = heat + 1e-4 * torch.rand(heat.shape, generator=torch.Generator().manual_seed(0))
    heat = camlab.maps.scale(heat).float()
    return model, x, heat


def cases(model, x, heat) -> dict:
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.metrics.arcc import ARCC
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    classes = [TARGET] * x.shape[0]
    targets = [ClassifierOutputSoftmaxTarget(TARGET) for _ in classes]
    cams = heat.numpy()
    gradcam = camlab.GradCAM(model, LAYER)
    peer_gradcam = PeerGradCAM(model, [model.get_submodule(LAYER)])

    def explainer(batch, chosen):
        return gradcam(batch, [lambda output, c=c: output.softmax(dim=1)[:, c] for c in chosen])

    def quiet(run):
        def wrapped():
            with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return run()
        return wrapped

    return {
        "camlab road": quiet(lambda: road(model, x, heat, classes)),
        "pytorch-grad-cam ROADCombined": quiet(lambda: ROADCombined()(x, cams, targets, model)),
        "camlab arcc": quiet(lambda: arcc(model, x, explainer, classes, maps=heat)),
        "pytorch-grad-cam ARCC": quiet(lambda: ARCC(base_method=peer_gradcam)(x, cams, targets, model)),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    model, x, heat = setup(args.batch)
    samples = interleaved_samples(cases(model, x, heat), rounds=args.rounds, warmup=1)
    print(f"efficientnet_lite0, batch {args.batch}, {args.rounds} interleaved rounds, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    for name, seconds in medians(samples).items():
        print(f"  {name:32s} median {seconds:7.2f} s  [{min(samples[name]):.2f}, {max(samples[name]):.2f}]")
    for ours, peer in (("camlab road", "pytorch-grad-cam ROADCombined"), ("camlab arcc", "pytorch-grad-cam ARCC")):
        median, low, high = round_ratios(samples[ours], samples[peer])
        print(f"  {ours} / {peer}: median {median:.2f} [{low:.2f}, {high:.2f}]")


if __name__ == "__main__":
    main()

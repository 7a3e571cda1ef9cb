"""SS-CAM, IS-CAM, FullGrad, Seg-Eigen-CAM, RefineCAM, SESS and Deep Feature Factorization against their peers
(torchcam 0.5 for SS-CAM / IS-CAM, pytorch-grad-cam 1.5.7 for the rest) on efficientnet_lite0, batch 8
(``--batch``), 224 x 224, CPU, interleaved rounds: each round runs every case once, in the same order, and each
method's ratio camlab / peer is taken within the round; the summary is the median and the range of the ratios over
the rounds.

    python benchmarks/bench_score_family.py [--rounds 3] [--samples 2] [--only sscam,iscam] [--batch 8] [--photo]

Settings (the same for both sides): target class 285; layer ``bn2`` (1280 x 7 x 7) for Seg-Eigen-CAM, SESS and
DFF; Score-CAM's variants at ``blocks.5`` (192 x 7 x 7) with ``--samples`` noisy / scaled masks per channel (at
``bn2`` one run would be 8 x 1280 x samples forward passes, minutes on a CPU), Score-CAM's paper weighting (the
peer's); RefineCAM with Grad-CAM++ at ``blocks.4``, ``blocks.5``, ``bn2``; SESS with Grad-CAM and 3 scales (224,
288, 352: 9 patches per image); DFF with 5 concepts and the classifier as head.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import camlab  # noqa: E402

TARGET = 285
LAYER = "bn2"
SCORE_LAYER = "blocks.5"
REFINE_LAYERS = ["blocks.4", "blocks.5", "bn2"]


def pairs(model, x, samples: int) -> dict[str, tuple]:
    """name -> (camlab run, peer run)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import DeepFeatureFactorization
    from pytorch_grad_cam.sess import SESS
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam import methods as tcm

    modules = dict(model.named_modules())
    targets = [ClassifierOutputTarget(TARGET)] * len(x)

    def ours(name, layer, **options):
        method = camlab.build(name, model, layer, **options)
        return lambda: method(x, target=TARGET)

    def torchcam(cls, **options):
        def run():
            with cls(model, SCORE_LAYER, batch_size=64, **options) as extractor:
                with torch.no_grad():
                    model(x)
                extractor(class_idx=TARGET)
        return run

    def pgc_run(make):
        def run():
            cam = make()
            cam(input_tensor=x, targets=targets)
            if hasattr(cam, "activations_and_grads"):
                cam.activations_and_grads.release()
        return run

    def pgc_dff():
        peer = DeepFeatureFactorization(model, modules[LAYER], computation_on_concepts=model.classifier)
        peer(x, 5)
        peer.activations_and_grads.release()  # the peer never releases its hooks: they would pile up on the model

    dff = camlab.DeepFeatureFactorization(model, LAYER, n_components=5, head=model.classifier)
    return {
        "sscam": (ours("sscam", SCORE_LAYER, n_samples=samples, weighting="paper", progress=False),
                  torchcam(tcm.SSCAM, num_samples=samples, std=2.0)),
        "iscam": (ours("iscam", SCORE_LAYER, n_samples=samples, weighting="paper", progress=False),
                  torchcam(tcm.ISCAM, num_samples=samples)),
        "fullgrad": (ours("fullgrad", None), pgc_run(lambda: pgc.FullGrad(model, []))),
        "segeigencam": (ours("segeigencam", LAYER),
                        pgc_run(lambda: pgc.SegEigenCAM(model, [modules[LAYER]]))),
        "refinecam": (ours("refinecam", REFINE_LAYERS),
                      pgc_run(lambda: pgc.RefineCAM(model, [modules[name] for name in REFINE_LAYERS]))),
        "sess": (ours("sess", LAYER, num_scales=3), pgc_run(lambda: SESS(model, [modules[LAYER]], num_scales=3))),
        "dff": (lambda: dff(x), pgc_dff),
    }


def measure(cases: dict[str, tuple], rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(camlab seconds, peer seconds) per method and round, after one untimed warm-up round."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for index in range(rounds + 1):
        for name, runs in cases.items():
            pair = []
            for run in runs:
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    run()
                pair.append(time.perf_counter() - start)
            if index:
                times[name].append(tuple(pair))
            print(f"round {index}: {name} camlab {pair[0]:.2f} s, peer {pair[1]:.2f} s", file=sys.stderr)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--only", default="")
    parser.add_argument("--batch", type=int, default=8, help="images per call (default 8)")
    parser.add_argument("--photo", action="store_true",
                        help="the cat photo, repeated, instead of seeded noise (on noise DFF's NMF never converges and "
                             "runs all 200 iterations on both sides; on the photo it stops after about 50-90)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    model = camlab.load_model("efficientnet_lite0")
    x = (camlab.preprocess(camlab.load_image("cat"), model).repeat(args.batch, 1, 1, 1) if args.photo
         else torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    cases = pairs(model, x, args.samples)
    if args.only:
        cases = {name: cases[name] for name in args.only.split(",")}
    times = measure(cases, args.rounds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds (shared, noisy machine)")
    print("| method | camlab median s | peer median s | ratio median | ratio range |")
    print("|---|---|---|---|---|")
    for name, pairs_ in times.items():
        ratios = [ours / peer for ours, peer in pairs_]
        print(f"| {name} | {statistics.median(o for o, _ in pairs_):.2f} | {statistics.median(p for _, p in pairs_):.2f}"
              f" | {statistics.median(ratios):.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x |")


if __name__ == "__main__":
    main()

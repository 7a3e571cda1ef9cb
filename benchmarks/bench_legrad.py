"""camlab.LeGrad against torchcam 0.5.0's LeGrad on torchvision's ``vit_b_16`` (random weights, the zero-initialised
head drawn at random, ``image_size`` 64: a 4x4 patch grid), batch 4, all 12 blocks, CPU. torchcam is given the
model's own block score (``score_projection = heads(encoder.ln(z)[:, 0])``, the class token as the model reads it;
its default mean-pools all tokens, see ``camlab/legrad.py``). Reported: max |delta| of the raw (unscaled) maps and of
the min-max scaled maps, the map magnitude, the max |delta| against torchcam's default score, and camlab's time /
torchcam's time per round over interleaved rounds (median and range).

    python benchmarks/bench_legrad.py [--rounds 5] [--batch 4] [--size 64]

Measured on the shared 2-core CPU machine (defaults): raw maps max |delta| 9.3e-10 (map max 4.1e-3), scaled maps
6.3e-6 (torchcam adds 1e-8 to the denominator), against torchcam's default mean-pooled score 1.3e-3 (the same size
as the map); camlab / torchcam time 0.96 (range 0.84-1.39) over 5 interleaved rounds.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_samples, medians, round_ratios  # noqa: E402

import camlab  # noqa: E402


def model_and_input(size: int, batch: int):
    from torchvision.models import vit_b_16

    torch.manual_seed(0)
    model = vit_b_16(weights=None, image_size=size, num_classes=1000).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    return model, x


def torchcam_maps(model, x, classes, projection=None, normalized=False):
    from torchcam.methods import LeGrad

    with LeGrad(model, list(model.encoder.layers), score_projection=projection) as extractor:
        return extractor(classes, model(x), normalized=normalized)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("CAMLAB_THREADS", "2")))
    model, x = model_and_input(args.size, args.batch)
    classes = [int(c) for c in model(x).argmax(1)]
    own = lambda z: model.heads(model.encoder.ln(z)[:, 0])  # noqa: E731
    ours = camlab.LeGrad(model)(x, target=classes, raw=True)
    theirs = torchcam_maps(model, x, classes, own)
    print(f"raw maps: max |delta| {(ours - theirs).abs().max():.1e} (map max {ours.abs().max():.2e})")
    scaled = camlab.scale(ours)
    print(f"scaled maps: max |delta| {(scaled - torchcam_maps(model, x, classes, own, True)).abs().max():.1e}")
    print(f"torchcam default score: max |delta| {(ours - torchcam_maps(model, x, classes)).abs().max():.1e} raw")
    cases = {"camlab": lambda: camlab.LeGrad(model)(x, target=classes),
             "torchcam": lambda: torchcam_maps(model, x, classes, own, True)}
    samples = interleaved_samples(cases, args.rounds)
    median, low, high = round_ratios(samples["camlab"], samples["torchcam"])
    times = medians(samples)
    print(f"time: camlab {times['camlab'] * 1e3:.0f} ms, torchcam {times['torchcam'] * 1e3:.0f} ms; camlab/torchcam "
          f"{median:.2f} (range {low:.2f}-{high:.2f}, {args.rounds} interleaved rounds)")


if __name__ == "__main__":
    main()

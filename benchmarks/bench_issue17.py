"""Every method issue 17 took from pytorch-grad-cam 1.5.7 and torchcam 0.5.0, against its peer, in ONE interleaved
run: each round runs every case once, camlab and then its peer back to back, so that both sides of a ratio meet the
same machine state; a method's ratio camlab / peer is taken within each round and summarised by its median and
range over the rounds; the last column is the ratio of each side's fastest call (the least disturbed one). The
machine's load average is printed before and after (the project's machine is a shared 2-core VM: quote the range,
not the median alone).

    python benchmarks/bench_issue17.py [--rounds 5] [--batch 8] [--only dff,sess] [--metrics]

Cases (CPU, efficientnet_lite0 with its offline ImageNet weights, 224 x 224, the cat photo repeated ``--batch``
times, class 285; settings as in the per-family scripts this one reuses):

- ``bench_peer_methods.py``: Grad-CAM element-wise, Eigen-Grad-CAM, KPCA-CAM, FEM, ShapleyCAM, Finer-CAM,
  ``aug_smooth``, ``eigen_smooth`` at ``bn2`` (1280 x 7 x 7);
- ``bench_score_family.py``: FullGrad; Seg-Eigen-CAM and SESS (3 scales) at ``bn2``; RefineCAM (Grad-CAM++ at
  ``blocks.4``, ``blocks.5``, ``bn2``); Deep Feature Factorization (5 concepts, the classifier as head) on the photo
  (NMF stops after tens of iterations) and on seeded noise (``dff noise``: all 200 iterations on both sides);
  SS-CAM and IS-CAM against torchcam at ``blocks.5``, 2 samples, batch 1 (at batch 8 a call is thousands of masked
  passes);
- ``bench_legrad.py``: LeGrad against torchcam on torchvision's ``vit_b_16`` (random weights, 64 x 64, batch 4);
- with ``--metrics``, ``bench_road.py``: ROAD (combined, 9 shares) and ARCC at batch 2 (each round then takes about
  two minutes more).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_legrad  # noqa: E402
import bench_peer_methods  # noqa: E402
import bench_road  # noqa: E402
import bench_score_family  # noqa: E402
from timing import interleaved_samples, medians, round_ratios  # noqa: E402

import camlab  # noqa: E402


def quiet(run):
    """``run`` with the peers' prints, progress bars and warnings silenced."""
    def silenced():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run()
    return silenced


def peer_methods(model, x) -> dict[str, tuple[str, tuple]]:
    """name -> (setting, (camlab run, peer run)) from ``bench_peer_methods.py``."""
    runs = bench_peer_methods.cases(model, x, "bn2")
    result = {}
    for (name, options), (peer, call) in bench_peer_methods.PAIRS:
        ours = f"camlab {bench_peer_methods.label(name, options)}"
        theirs = f"pytorch-grad-cam {peer}{''.join(f' {key}' for key in call)}"
        result[bench_peer_methods.label(name, options)] = (f"batch {len(x)}", (runs[ours], runs[theirs]))
    return result


def score_family(model, x, noise, single, samples: int) -> dict[str, tuple[str, tuple]]:
    """name -> (setting, (camlab run, peer run)) from ``bench_score_family.py``; SS-/IS-CAM on ``single``."""
    batch = bench_score_family.pairs(model, x, samples)
    result = {name: (f"batch {len(x)}", batch[name]) for name in ("fullgrad", "segeigencam", "refinecam", "sess",
                                                                  "dff")}
    result["dff noise"] = (f"batch {len(x)}, noise", bench_score_family.pairs(model, noise, samples)["dff"])
    one = bench_score_family.pairs(model, single, samples)
    result.update({name: ("batch 1, torchcam", one[name]) for name in ("sscam", "iscam")})
    return result


def legrad(batch: int = 4, size: int = 64) -> dict[str, tuple[str, tuple]]:
    model, x = bench_legrad.model_and_input(size, batch)
    classes = [int(c) for c in model(x).argmax(1)]
    own = lambda z: model.heads(model.encoder.ln(z)[:, 0])  # noqa: E731
    explainer = camlab.LeGrad(model)
    return {"legrad": (f"vit_b_16 {size}px, batch {batch}, torchcam",
                       (lambda: explainer(x, target=classes),
                        lambda: bench_legrad.torchcam_maps(model, x, classes, own, True)))}


def metrics(batch: int = 2) -> dict[str, tuple[str, tuple]]:
    model, x, heat = bench_road.setup(batch)
    runs = bench_road.cases(model, x, heat)
    return {"road": (f"batch {batch}", (runs["camlab road"], runs["pytorch-grad-cam ROADCombined"])),
            "arcc": (f"batch {batch}", (runs["camlab arcc"], runs["pytorch-grad-cam ARCC"]))}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2, help="SS-CAM / IS-CAM samples per channel")
    parser.add_argument("--only", default="", help="comma-separated method names")
    parser.add_argument("--metrics", action="store_true", help="also ROAD and ARCC (batch 2)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    model = camlab.load_model("efficientnet_lite0")
    x = camlab.preprocess(camlab.load_image("cat"), model).repeat(args.batch, 1, 1, 1)
    noise = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    methods = {**peer_methods(model, x), **score_family(model, x, noise, x[:1], args.samples), **legrad()}
    if args.metrics:
        methods.update(metrics())
    if args.only:
        methods = {name: methods[name] for name in args.only.split(",")}
    cases = {}
    for name, (_, (ours, theirs)) in methods.items():
        cases[f"camlab {name}"], cases[f"peer {name}"] = quiet(ours), quiet(theirs)
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"{started:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs ({platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; before: {load()}", flush=True)
    samples = interleaved_samples(cases, rounds=args.rounds, warmup=1)
    finished = datetime.datetime.now(datetime.timezone.utc)
    print(f"after {(finished - started).total_seconds() / 60:.1f} min: {load()}; {args.rounds} interleaved rounds "
          "after one warm-up round\n")
    middle = medians(samples)
    print("| method | setting | camlab median (ms) | peer median (ms) | camlab / peer, median [min, max] | "
          "fastest / fastest |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (setting, _) in methods.items():
        ours, theirs = samples[f"camlab {name}"], samples[f"peer {name}"]
        median, low, high = round_ratios(ours, theirs)
        print(f"| {name} | {setting} | {middle[f'camlab {name}'] * 1e3:.0f} | {middle[f'peer {name}'] * 1e3:.0f} | "
              f"{median:.2f} [{low:.2f}, {high:.2f}] | {min(ours) / min(theirs):.2f} |")


if __name__ == "__main__":
    main()

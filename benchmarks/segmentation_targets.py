"""Where each method's map lands for a segmentation target on the lab's ``lab_seg``: 100 seeded scenes with one
distractor each, ``SegmentationTarget(scene class, the pixels lab_seg gives that class)`` at layer ``backbone``; the
share of scenes whose map peaks inside the object's box, with its Wilson 95% interval. Also Score-CAM's probability
form with the raw summed logits as weights (a plain callable), what it did before ``SegmentationTarget.probability``.

    python benchmarks/segmentation_targets.py [--scenes 100]

(About 10 minutes on 2 loaded CPU cores, most of it Score-CAM.)
"""
from __future__ import annotations

import argparse

import torch

import camlab
from camlab.lab.scenes import make_scenes, normalise
from camlab.stats import proportion
from camlab.targets import SegmentationTarget

METHODS = ("gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "ablationcam", "eigencam")


def peak_inside(maps: torch.Tensor, boxes: torch.Tensor):
    """The share of maps whose maximum lies inside the (x0, y0, x1, y1) box of their scene, with its interval."""
    width = maps.shape[-1]
    peak = maps.flatten(1).argmax(1)
    rows, cols = peak // width, peak % width
    inside = (cols >= boxes[:, 0]) & (cols < boxes[:, 2]) & (rows >= boxes[:, 1]) & (rows < boxes[:, 3])
    return proportion(inside.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100)
    args = parser.parse_args()
    net = camlab.load_model("lab_seg")
    scenes = make_scenes(args.scenes, seed=11, distractors=1)
    x = normalise(scenes.images)
    with torch.no_grad():
        predicted = net(x)["out"].argmax(1)
    classes = (scenes.labels + 1).tolist()  # class 0 is the background
    targets = [SegmentationTarget(c, predicted[i] == c) for i, c in enumerate(classes)]
    for name in METHODS:
        maps = camlab.build(name, net, layer="backbone", progress=False)(x, target=targets)
        print(f"{name:<34} {peak_inside(maps, scenes.boxes)}", flush=True)
    for weighting in ("probability", "paper"):
        maps = camlab.ScoreCAM(net, layer="backbone", progress=False, weighting=weighting)(x, target=targets)
        print(f"{'scorecam ' + weighting:<34} {peak_inside(maps, scenes.boxes)}", flush=True)
    raw_sums = [lambda output, target=target: target(output) for target in targets]  # no .probability
    maps = camlab.ScoreCAM(net, layer="backbone", progress=False)(x, target=raw_sums)
    print(f"{'scorecam probability, raw sums':<34} {peak_inside(maps, scenes.boxes)}", flush=True)


if __name__ == "__main__":
    main()

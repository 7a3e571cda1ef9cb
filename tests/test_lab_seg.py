"""Specification of ``lab_seg``, the lab's tiny segmentation network: torchvision's output layout
(``{"out": (N, K, H, W)}``, class 0 = background), the metrics it is judged by (worked examples), and its floors
on fixed held-out scenes."""
from __future__ import annotations

import functools
import math
from collections import OrderedDict

import torch
from torch import nn

from camlab.lab.scenes import LAB_CLASSES, make_scenes, normalise
from camlab.lab.seg import SEG_CLASSES, LabSegNet, label_maps, seg_test_scenes, segmentation_scores
from camlab.lab.zoo import LAB_MODELS, load_lab_model

# floors a little under the measured 0.996 / 0.929 / 0.870 (benchmarks/labvit.py)
PIXEL_FLOOR, IOU_FLOOR, CLASS_IOU_FLOOR = 0.99, 0.90, 0.84


@functools.lru_cache(maxsize=None)
def seg():
    return load_lab_model("lab_seg")


@functools.lru_cache(maxsize=None)
def heldout_scores() -> dict:
    return segmentation_scores(seg(), seg_test_scenes(500))


class Oracle(nn.Module):
    """Returns torchvision-style logits that put +1 on a fixed per-pixel label map (N, H, W) and 0 elsewhere."""

    def __init__(self, labels: torch.Tensor):
        super().__init__()
        self.labels = labels

    def forward(self, x):
        logits = nn.functional.one_hot(self.labels[: len(x)], len(SEG_CLASSES)).permute(0, 3, 1, 2).float()
        return OrderedDict(out=logits)


def test_lab_seg_returns_torchvisions_dict_of_dense_logits_at_input_resolution():
    net = seg()
    assert isinstance(net, LabSegNet) and LAB_MODELS["lab_seg"].default_layer == "backbone"
    assert net.camlab.labels == ["background", *LAB_CLASSES] == list(SEG_CLASSES)
    with torch.no_grad():
        out = net(normalise(make_scenes(3, seed=0).images))
    assert list(out) == ["out"] and out["out"].shape == (3, 6, 64, 64) and out["out"].dtype == torch.float32
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 48, 80))["out"].shape == (1, 6, 48, 80)  # any input size, as torchvision


def test_label_maps_carry_one_plus_the_scene_class_on_its_mask_and_zero_elsewhere():
    scenes = make_scenes(6, seed=3)
    labels = label_maps(scenes)
    for i in range(6):
        assert set(labels[i][scenes.masks[i]].tolist()) == {int(scenes.labels[i]) + 1}
        assert set(labels[i][~scenes.masks[i]].tolist()) == {0}


def test_a_perfect_prediction_scores_pixel_accuracy_and_mean_iou_one():
    scenes = make_scenes(4, seed=1)
    scores = segmentation_scores(Oracle(label_maps(scenes)), scenes)
    assert scores["test_accuracy"] == 1.0 and scores["mean_iou"] == 1.0
    # a class in neither the truth nor the prediction has no IoU (NaN), and the mean leaves it out
    present = set(label_maps(scenes).unique().tolist())
    assert len(present) < 6
    for k, value in enumerate(scores["iou"]):
        assert value == 1.0 if k in present else math.isnan(value)


def test_predicting_background_everywhere_scores_the_background_share_worked_example():
    """All-background prediction: pixel accuracy = background pixels / all pixels; background IoU is the same
    ratio (TP = background pixels, FP = object pixels, FN = 0); every object class has IoU 0."""
    scenes = make_scenes(5, seed=2, labels=[0, 1, 2, 3, 4])  # every class present once
    scores = segmentation_scores(Oracle(torch.zeros(5, 64, 64, dtype=torch.long)), scenes)
    share = float((~scenes.masks).float().mean())
    assert abs(scores["test_accuracy"] - share) < 1e-9
    assert abs(scores["iou"][0] - round(share, 4)) < 1e-4 and scores["iou"][1:] == [0.0] * 5
    assert abs(scores["mean_iou"] - share / 6) < 1e-9


def test_lab_seg_reaches_its_floors_on_500_held_out_scenes():
    scores = heldout_scores()
    assert scores["test_accuracy"] >= PIXEL_FLOOR and scores["mean_iou"] >= IOU_FLOOR, scores
    assert min(scores["iou"]) >= CLASS_IOU_FLOOR, scores


def test_zoo_records_the_measured_numbers():
    scores = heldout_scores()
    spec = LAB_MODELS["lab_seg"]
    assert abs(spec.test_accuracy - scores["test_accuracy"]) < 0.002
    assert f"mean IoU {scores['mean_iou']:.1%}" in spec.description

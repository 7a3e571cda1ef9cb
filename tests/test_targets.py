"""The target objects of ``camlab.targets`` worked by hand, per-image target lists (image i's target scores image i's
perturbed copies only), the row-wise check for a single callable in perturbation methods, and the class-index holes
(numpy integers accepted; floats, bools and 0-d float tensors refused, never truncated). The holes, the per-image
lists of callables and the row-wise error all failed on main (e3ff581)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget, SemanticSegmentationTarget

import camlab
from camlab.targets import (BinaryTarget, ClassTarget, DetectionTarget, EmbeddingTarget, SegmentationTarget,
                            per_image, probabilities_of, scores)
from tests.test_methods_state import tiny_net
from tests.test_scorecam_forms import X, identity_layer_net, scorecam
from tests.tiny_nets import GapNet

PERTURBATION = {"scorecam": dict(batch_size=16), "ablationcam": dict(batch_size=16),
                "occlusion": dict(patch=4, stride=4)}


def x_batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# --- the target objects, by hand -------------------------------------------------------------------------------------

def test_class_target_is_the_logit_and_the_same_as_the_int_everywhere():
    logits = torch.tensor([[1.0, 5.0, -2.0], [0.5, 0.0, 3.0]])
    assert torch.equal(ClassTarget(2)(logits), torch.tensor([-2.0, 3.0]))
    assert torch.equal(ClassTarget(1)((logits, "aux")), torch.tensor([5.0, 0.0]))
    assert repr(ClassTarget(np.int64(2))) == "ClassTarget(2)"
    model = tiny_net().eval()
    for name in ("gradcam", "cam", "scorecam"):
        method = camlab.build(name, model, layer="features.4", progress=False)
        torch.testing.assert_close(method(x_batch(), target=ClassTarget(2)), method(x_batch(), target=2))
    with pytest.raises(ValueError, match=r"target class 3 is outside the model's 3 classes"):
        ClassTarget(3)(logits)


def test_binary_target_is_the_log_odds_of_either_class():
    """One logit z: +z and -z; two logits (z0, z1): +-(z1 - z0); probabilities sigma of those."""
    one = torch.tensor([[2.0], [-1.0]])
    assert torch.equal(BinaryTarget()(one), torch.tensor([2.0, -1.0]))
    assert torch.equal(BinaryTarget(positive=False)(one), torch.tensor([-2.0, 1.0]))
    assert torch.equal(BinaryTarget()(one[:, 0]), torch.tensor([2.0, -1.0]))
    two = torch.tensor([[1.0, 3.0]])
    assert torch.equal(BinaryTarget(False)(two), torch.tensor([-2.0]))
    torch.testing.assert_close(BinaryTarget(False).probability(one), 1 - torch.sigmoid(one[:, 0]))
    assert repr(BinaryTarget(False)) == "BinaryTarget(positive=False)"
    with pytest.raises(ValueError, match=r"one logit \(N,1\) or \(N,\), or two \(N,2\).*shape \(2, 3\)"):
        BinaryTarget()(torch.zeros(2, 3))


def test_segmentation_target_sums_the_class_scores_over_the_mask():
    """Class 1's scores [[1, 2], [3, 4]] over the diagonal mask: 1 + 4 = 5; weights (0.5 everywhere): 5."""
    dense = torch.stack([torch.zeros(2, 2), torch.tensor([[1.0, 2.0], [3.0, 4.0]])])[None]
    diagonal = np.eye(2, dtype=bool)
    assert torch.equal(SegmentationTarget(1, diagonal)(dense), torch.tensor([5.0]))
    assert torch.equal(SegmentationTarget(1, torch.full((2, 2), 0.5))({"out": dense, "aux": dense}), torch.tensor([5.0]))
    batch = torch.cat([dense, 2 * dense])
    masks = torch.stack([torch.eye(2), 1 - torch.eye(2)])
    per_image_masks = SegmentationTarget(1, masks)
    assert torch.equal(per_image_masks(batch), torch.tensor([5.0, 10.0]))
    assert torch.equal(per_image_masks.for_image(1)(batch[1:]), torch.tensor([10.0]))
    # as pytorch-grad-cam's target, which takes one image's (K,H,W) scores and a numpy mask
    assert torch.equal(SegmentationTarget(1, diagonal)(dense)[0], SemanticSegmentationTarget(1, diagonal.astype(
        np.float32))(dense[0]))
    assert "category=1" in repr(per_image_masks) and "(2, 2, 2)" in repr(per_image_masks)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\) does not fit the output's 1 maps of 2x2"):
        SegmentationTarget(1, np.ones((3, 3)))(dense)
    with pytest.raises(ValueError, match=r"category 2 is outside the output's 2 classes"):
        SegmentationTarget(2, diagonal)(dense)
    with pytest.raises(ValueError, match=r"dense \(N, classes, H, W\) scores"):
        SegmentationTarget(0, diagonal)(torch.zeros(1, 3))


def test_segmentation_probability_is_the_mean_class_probability_over_the_mask():
    """Class 1's scores [[0, ln3], [0, 0]] against class 0's zeros: p_1 = [[1/2, 3/4], [1/2, 1/2]]; over the top row
    (1/2 + 3/4) / 2 = 5/8; an empty mask gives 0. Score-CAM's probability form uses it (raw summed logits as weights
    can be negative and large: see NOTES-targets.md for what that did to lab_seg's maps)."""
    dense = torch.stack([torch.zeros(2, 2), torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])])[None]
    top_row = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
    assert torch.allclose(SegmentationTarget(1, top_row).probability({"out": dense}), torch.tensor([0.625]))
    assert torch.allclose(probabilities_of(dense, SegmentationTarget(1, top_row)), torch.tensor([0.625]))
    assert torch.equal(SegmentationTarget(1, torch.zeros(2, 2)).probability(dense), torch.zeros(1))


def detections(scores=(0.9, 0.8, 0.7)) -> dict:
    """Three boxes: label 1 at (0,0,10,10); label 2 at (0,0,10,9) (IoU 0.9 with the query); label 1 at (0,0,10,6)."""
    return {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 6.0]]),
            "labels": torch.tensor([1, 2, 1]), "scores": torch.tensor(scores, requires_grad=True)}


def test_detection_target_takes_the_best_overlapping_box_of_that_label():
    """Query (0,0,10,9): IoU 0.9 with box 0 (label 1), 1.0 with box 1 (label 2), 0.6/0.9 = 2/3 with box 2 (label 1)."""
    query = [0.0, 0.0, 10.0, 9.0]
    output = [detections(), detections((0.2, 0.3, 0.4))]
    assert torch.allclose(DetectionTarget(query, 1)(output), torch.tensor([0.9, 0.2]))
    assert torch.allclose(DetectionTarget(query, 2)(output), torch.tensor([0.8, 0.3]))
    assert torch.allclose(DetectionTarget(query, 1, with_iou=True)(output), torch.tensor([1.8, 1.1]))
    assert torch.allclose(DetectionTarget([0, 0, 10, 6], 1)(output), torch.tensor([0.7, 0.4]))
    # no box of label 3; label 1 with IoU >= 0.95: none. The zero still depends on the scores (a zero gradient).
    none = DetectionTarget(query, 3)(output)
    assert torch.equal(none, torch.zeros(2)) and none.requires_grad
    assert torch.equal(DetectionTarget(query, 1, iou_threshold=0.95)(output), torch.zeros(2))
    assert repr(DetectionTarget(query, 1)) == "DetectionTarget(box=[0.0, 0.0, 10.0, 9.0], label=1, iou_threshold=0.5)"
    with pytest.raises(TypeError, match="one dict per image"):
        DetectionTarget(query, 1)(torch.zeros(2, 3))


def test_detection_target_against_pytorch_grad_cam():
    """Same value as FasterRCNNBoxScoreTarget (with_iou=True) when the best-overlapping box has the label; where a
    box of another label overlaps better, pytorch-grad-cam scores 0 and DetectionTarget the label's own box."""
    output = detections()
    theirs = FasterRCNNBoxScoreTarget([1], [np.array([0.0, 0.0, 10.0, 10.0])])(output)
    ours = DetectionTarget([0.0, 0.0, 10.0, 10.0], 1, with_iou=True)([output])
    assert torch.allclose(ours, theirs)
    hidden = FasterRCNNBoxScoreTarget([1], [np.array([0.0, 0.0, 10.0, 9.0])])(output)
    assert float(hidden.detach()) == 0.0
    assert float(DetectionTarget([0.0, 0.0, 10.0, 9.0], 1, with_iou=True)([output])[0].detach()) == pytest.approx(1.8)


def test_embedding_target_is_the_cosine_similarity():
    """e = (3, 4), r = (1, 0): 3/5; e = (0, 2): 0; a (N,2,1,1) embedding is flattened per image."""
    embeddings = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    target = EmbeddingTarget(np.array([1.0, 0.0]))
    assert torch.allclose(target(embeddings), torch.tensor([0.6, 0.0]))
    assert torch.allclose(target(embeddings[:, :, None, None]), torch.tensor([0.6, 0.0]))
    assert repr(target) == "EmbeddingTarget(reference of 2 values)"
    with pytest.raises(ValueError, match="embeddings have 3 values per image, the reference 2"):
        target(torch.zeros(1, 3))


# --- Score-CAM and a binary model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("weighting, positive, expected", [
    # one logit z = ln3 on x*H0, 0 on x*H1 (test_scorecam_forms' net); channels [0, 2] and [4, 0]
    ("probability", True, [2.0, 1.5]),    # sigma(z) = (3/4, 1/2): 3/4 [0,2] + 1/2 [4,0]
    ("probability", False, [2.0, 0.5]),   # 1 - sigma(z) = (1/4, 1/2)
    ("paper", True, [1.0, 1.5]),          # softmax over channels of (ln3, 0) = (3/4, 1/4)
    ("paper", False, [3.0, 0.5]),         # softmax over channels of (-ln3, 0) = (1/4, 3/4)
])
def test_scorecam_on_a_single_logit_model_explains_either_class(weighting, positive, expected):
    heat = scorecam(identity_layer_net(outputs=1), weighting)(X, target=BinaryTarget(positive), raw=True)
    assert torch.allclose(heat[0], torch.tensor([expected]))
    if positive:  # the int 0 is the positive class
        assert torch.allclose(scorecam(identity_layer_net(outputs=1), weighting)(X, target=0, raw=True), heat)


# --- per-image targets -----------------------------------------------------------------------------------------------

def second_minus_first(output: torch.Tensor) -> torch.Tensor:
    return output[:, 1] - output[:, 0]


MIXED = [2, ClassTarget(0), second_minus_first]


@pytest.mark.parametrize("name", ["gradcam", "layercam", "gradient", "scorecam", "ablationcam", "occlusion"])
def test_each_image_is_explained_for_its_own_target(name):
    """A list mixing an int, a ClassTarget and a callable: image i's map equals the map of image i alone with its
    target (perturbation methods score image i's copies with image i's target only)."""
    model, x = tiny_net().eval(), x_batch(3)
    layer = None if name in ("gradient", "occlusion") else "features.4"
    method = camlab.build(name, model, layer=layer, progress=False, **PERTURBATION.get(name, {}))
    together = method(x, target=MIXED)
    for i, target in enumerate(MIXED):
        torch.testing.assert_close(together[i:i + 1], method(x[i:i + 1], target=target), rtol=1e-5, atol=1e-6)


def test_scores_and_per_image_resolve_mixed_lists():
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 9.0, 8.0]])
    assert torch.equal(scores(logits, MIXED), torch.tensor([3.0, 4.0, 2.0]))
    assert per_image(logits, MIXED)[:2] == [2, 0] and per_image(logits, MIXED)[2] is second_minus_first
    assert per_image(logits, (np.int64(1), 0, torch.tensor(2))) == [1, 0, 2]
    with pytest.raises(ValueError, match=r"target has 2 targets but the batch has 3 images"):
        scores(logits, MIXED[1:])


@pytest.mark.parametrize("name", list(PERTURBATION))
def test_a_single_callable_that_is_not_row_wise_is_refused_by_perturbation_methods(name):
    """The issue's silent-wrong case: a callable written for the whole batch (image 0 -> class 0, image 1 -> class 2)
    would be called on batches of copies of one image. Refused with a clear error; a list works."""
    model, x = tiny_net().eval(), x_batch()
    layer = None if name == "occlusion" else "features.4"
    method = camlab.build(name, model, layer=layer, progress=False, **PERTURBATION[name])
    for not_row_wise in (lambda out: out[torch.arange(2), torch.tensor([0, 2])],   # fails on one image
                         lambda out: out[:, 0] - out[:, 0].mean()):                # depends on the other images
        with pytest.raises(ValueError, match=r"is not row-wise.*pass a list with one target per image"):
            method(x, target=not_row_wise)
    torch.testing.assert_close(method(x, target=second_minus_first),
                               method(x, target=[second_minus_first, second_minus_first]))


def test_gradient_methods_take_any_batch_callable():
    """Gradient methods call a single callable once on the whole batch: a batch-dependent callable is fine."""
    model, x = tiny_net().eval(), x_batch()
    per_row = camlab.GradCAM(model, layer="features.4")(x, target=lambda out: out[torch.arange(2), torch.tensor([0, 2])])
    torch.testing.assert_close(per_row, camlab.GradCAM(model, layer="features.4")(x, target=[0, 2]))


# --- class-index holes ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [np.int64(2), np.int32(2), np.array(2), torch.tensor(2), np.array([2, 2]),
                                    torch.tensor([2, 2]), [np.int64(2), np.uint8(2)]])
def test_numpy_and_tensor_integer_targets_are_accepted(target):
    model = tiny_net().eval()
    method = camlab.GradCAM(model, layer="features.4")
    torch.testing.assert_close(method(x_batch(), target=target), method(x_batch(), target=2))


@pytest.mark.parametrize("target, message", [
    (torch.tensor(1.7), r"0-d torch.float32 tensor \(1.7"),
    (torch.tensor(True), "0-d torch.bool tensor"),
    (1.0, "got float 1.0"),
    (np.float64(2.0), "got float64 2.0"),
    (True, "got bool True"),
    (np.array([1.5, 2.0]), "integer class indices or callables, one per image; got float64 1.5"),
    (torch.tensor([[1, 2]]), r"a tensor of shape \(1, 2\)"),
])
def test_float_and_bool_targets_are_refused_not_truncated(target, message):
    with pytest.raises(TypeError, match=message):
        camlab.GradCAM(tiny_net().eval(), layer="features.4")(x_batch(), target=target)



# --- never silently wrong: NaN, infinite, detached and integer scores (each gave a map or blamed the layer on main) --

def test_a_nan_in_a_segmentation_mask_or_an_embedding_reference_is_refused_when_made():
    mask = torch.ones(8, 8)
    mask[2, 2] = float("nan")
    with pytest.raises(ValueError, match="mask contains NaN"):
        camlab.SegmentationTarget(1, mask)
    with pytest.raises(ValueError, match="reference contains NaN"):
        camlab.EmbeddingTarget(torch.tensor([1.0, float("nan")]))


@pytest.mark.parametrize("box", [(0, 0, float("inf"), 10), (float("-inf"), 0, 5, 10), (0, float("nan"), 5, 10)])
def test_a_detection_box_must_be_finite(box):
    with pytest.raises(ValueError, match="box must be finite"):
        camlab.DetectionTarget(box, label=1)


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "layercam"])
def test_a_callable_whose_score_is_nan_is_refused_naming_the_image(method):
    net = GapNet().eval()

    def score(logits):
        return logits[:, 0] * torch.tensor([1.0, float("nan")])

    with pytest.raises(ValueError, match="score of image 1 is NaN"):
        camlab.build(method, net)(torch.randn(2, 3, 8, 8), target=score)


def test_a_detached_score_is_blamed_on_the_target_not_the_layer():
    net = GapNet().eval()
    with pytest.raises(ValueError, match="not connected to the model's output.*detached"):
        camlab.GradCAM(net)(torch.randn(2, 3, 8, 8), target=lambda logits: logits[:, 0].detach())


def test_an_integer_score_is_refused_with_what_a_score_is():
    net = GapNet().eval()
    with pytest.raises(TypeError, match="returned torch.int64 scores.*a logit"):
        camlab.GradCAM(net)(torch.randn(2, 3, 8, 8), target=lambda logits: logits.argmax(dim=1))

"""camlab.analysis: map mass in boxes, blob counts, channel ablation, dense logit maps and region targets."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import camlab
from camlab.analysis import channel_ablation_drop, count_blobs, dense_logits, mass_in_boxes, region_target
from camlab.lab import GapCNN


def test_mass_in_boxes_counts_exclusive_upper_edges():
    """A map of ones on 10x10: the box (2,3,5,4) holds 3 x 1 = 3 of 100 pixels."""
    maps = torch.ones(1, 10, 10)
    assert torch.allclose(mass_in_boxes(maps, (2, 3, 5, 4)), torch.tensor([0.03]))
    assert torch.allclose(mass_in_boxes(maps[0], (0, 0, 10, 10)), torch.tensor(1.0))


def test_mass_in_boxes_per_image_and_per_instance():
    maps = torch.zeros(2, 8, 8)
    maps[0, 0, 0] = 3.0
    maps[0, 7, 7] = 1.0
    maps[1, 7, 7] = 2.0
    boxes = torch.tensor([[[0, 0, 4, 4], [4, 4, 8, 8]], [[0, 0, 4, 4], [4, 4, 8, 8]]])
    shares = mass_in_boxes(maps, boxes)
    assert shares.shape == (2, 2)
    assert torch.allclose(shares, torch.tensor([[0.75, 0.25], [0.0, 1.0]]))
    assert torch.allclose(mass_in_boxes(maps, boxes[:, 0]), torch.tensor([0.75, 0.0]))


def test_mass_in_boxes_clips_negatives_and_empty_map_gives_area():
    maps = torch.tensor([[[1.0, -5.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    shares = mass_in_boxes(maps, (0, 0, 1, 1))
    assert torch.allclose(shares, torch.tensor([1.0, 0.25]))


def test_mass_in_boxes_rejects_wrong_box_shape():
    with pytest.raises(ValueError, match="boxes must be"):
        mass_in_boxes(torch.ones(2, 4, 4), torch.zeros(3, 4))


def test_count_blobs_separates_and_joins_segments():
    heat = torch.zeros(3, 9, 9)
    heat[0, 1, 1] = heat[0, 7, 7] = 1.0  # two separate peaks
    heat[1, 1, 1] = heat[1, 2, 2] = 1.0  # diagonal neighbours: one 8-connected segment
    assert count_blobs(heat).tolist() == [2, 1, 0]  # the all-zero map has none
    heat[0, 7, 7] = 0.1  # below 15% of the maximum: gone
    assert int(count_blobs(heat[0])) == 1
    with pytest.raises(ValueError):
        count_blobs(heat, threshold=0.0)


def _tiny_gap(seed=0):
    torch.manual_seed(seed)
    model = GapCNN(num_classes=5, width=2).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def test_channel_ablation_drop_on_a_gap_head_is_weight_times_mean_activation():
    """Above a GAP + linear head the score is sum_k w_k mean(A^k) + b, so zeroing channel k drops it by exactly
    w_k mean(A^k) (= Grad-CAM's alpha_k times the channel's summed activation)."""
    model = _tiny_gap()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    drops = channel_ablation_drop(model, x, "features", target=[1, 3])
    with torch.no_grad():
        mean_activation = model.features(x).mean(dim=(2, 3))
    expected = torch.stack([model.fc.weight[1] * mean_activation[0], model.fc.weight[3] * mean_activation[1]])
    assert drops.shape == (2, 8)
    assert torch.allclose(drops, expected.detach(), atol=1e-5)


def test_channel_ablation_drop_matches_a_manual_forward_on_a_nonlinear_layer():
    model = _tiny_gap(2)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    drops = channel_ablation_drop(model, x, "features.4", target=2, batch_size=3)
    with torch.no_grad():
        base = model(x)[0, 2]
        for k in range(drops.shape[1]):
            handle = model.features[4].register_forward_hook(
                lambda m, i, o, k=k: o.index_fill(1, torch.tensor([k]), 0.0))
            try:
                assert torch.allclose(drops[0, k], base - model(x)[0, 2], atol=1e-5)
            finally:
                handle.remove()


def test_channel_ablation_drop_leaves_the_model_as_it_was():
    model = _tiny_gap().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    channel_ablation_drop(model, torch.rand(1, 3, 16, 16), "features", target=None)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.features._forward_hooks


def test_dense_logits_average_to_the_classifier_logits():
    model = _tiny_gap()
    x = torch.randn(2, 3, 32, 32)
    dense = dense_logits(model)
    with torch.no_grad():
        maps = dense(x)
        assert maps.shape == (2, 5, 8, 8)
        assert torch.allclose(maps.mean(dim=(2, 3)), model(x), atol=1e-5)
    assert dense.features is model.features


def test_dense_logits_needs_a_linear_head():
    with pytest.raises(ValueError, match="no module"):
        dense_logits(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_region_target_sums_a_class_map_inside_a_box_and_works_with_gradcam():
    output = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    target = region_target(1, (1, 2, 3, 4))
    assert torch.allclose(target(output), output[:, 1, 2:4, 1:3].sum(dim=(1, 2)))
    scaled = region_target(1, (16, 32, 48, 64), input_size=(64, 64))  # input pixels -> the 4x4 grid
    assert torch.allclose(scaled(output), output[:, 1, 2:4, 1:3].sum(dim=(1, 2)))
    model = _tiny_gap()
    heat = camlab.GradCAM(dense_logits(model), layer="features.4")(torch.rand(1, 3, 32, 32),
                                                                  target=region_target(0, (0, 0, 4, 4)))
    assert heat.shape == (1, 32, 32)
    with pytest.raises(ValueError, match="empty"):
        region_target(0, (3, 3, 3, 5))


class _Concat(nn.Module):
    """A torch.cat around the ablated layer: the batch-1 trick fails and the repeated input must take over."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(7, 2)

    def forward(self, x):
        a = self.conv(x)
        return self.head(torch.cat([a, x], dim=1).mean(dim=(2, 3)))


def test_channel_ablation_drop_falls_back_when_the_batch_cannot_broadcast():
    model = _Concat().eval()
    x = torch.rand(1, 3, 8, 8)
    drops = channel_ablation_drop(model, x, "conv", target=1, batch_size=2)
    with torch.no_grad():
        a = model.conv(x).mean(dim=(2, 3))[0]
    assert torch.allclose(drops[0], model.head.weight[1, :4].detach() * a, atol=1e-5)


def test_region_target_takes_one_class_and_box_per_image():
    output = torch.randn(2, 3, 4, 4)
    target = region_target([0, 2], torch.tensor([[0, 0, 2, 2], [1, 1, 4, 3]]))
    expected = torch.stack([output[0, 0, 0:2, 0:2].sum(), output[1, 2, 1:3, 1:4].sum()])
    assert torch.allclose(target(output), expected)
    with pytest.raises(ValueError, match="for a batch of 3"):
        region_target([0, 1], (0, 0, 1, 1))(torch.randn(3, 3, 4, 4))


def test_ask_each_equals_binding_each_question():
    from camlab.analysis import ask_each
    from camlab.lab import VQAModel

    torch.manual_seed(0)
    vqa = VQAModel(width=4).eval()
    images = torch.rand(2, 3, 32, 32)
    questions = ["what colour is the circle?", "is there a square?"]
    asked = ask_each(vqa, questions)
    with torch.no_grad():
        batched = asked(images)
        single = torch.cat([vqa.bind(q)(images[i:i + 1]) for i, q in enumerate(questions)])
    assert torch.allclose(batched, single, atol=1e-5)
    heat = camlab.GradCAM(asked, layer="image_encoder.features")(images, target=[0, 1])
    assert heat.shape == (2, 32, 32)
    with pytest.raises(ValueError, match="one per image"):
        asked(images[:1])

"""camlab.compare: methods x metrics x cost on one batch, as the chapters use it."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import camlab
from camlab.compare import (Comparison, compare_methods, format_comparison, instance_peaks, method_name,
                            time_per_map)


def gap_net() -> nn.Module:
    """conv -> ReLU ("features") -> GAP -> linear: seeded, 3 classes."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(6, 3))
    return model.eval()


def data(n=4, size=16):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, size, size, generator=generator)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, 4:10, 4:10] = True
    return x, masks


def test_gradcam_and_hirescam_score_the_same_on_a_gap_head():
    """Behind GAP + linear the gradient is constant in space, so HiResCAM = Grad-CAM: every metric agrees."""
    model, (x, masks) = gap_net(), data()
    table = compare_methods(model, x, ["gradcam", "hirescam"], layer="features", ground_truth=masks,
                            metrics=("pointing", "mass_inside", "average_drop", "increase", "deletion", "insertion"),
                            steps=4, timing_repeats=1)
    gradcam, hirescam = table["gradcam"], table["hirescam"]
    for key in table.metrics:
        assert gradcam[key] == pytest.approx(hirescam[key], abs=1e-6), key
        assert 0.0 <= gradcam[key] <= 1.0
    assert gradcam["seconds"] > 0 and gradcam["forwards"] > 0


def test_an_oracle_map_wins_the_pointing_game_and_the_direction_of_each_metric_is_respected():
    model, (x, masks) = gap_net(), data()

    def oracle(inputs, target):
        return masks[: len(inputs)].float()

    def inverted(inputs, target):
        return 1.0 - masks[: len(inputs)].float()

    table = compare_methods(model, x, {"oracle": oracle, "inverted": inverted}, ground_truth=masks,
                            metrics=("pointing", "mass_inside", "deletion"), steps=4, timing_repeats=0)
    assert table["oracle"]["pointing"] == 1.0 and table["inverted"]["pointing"] < 1.0
    assert table.best("pointing") == "oracle" and table.best("mass_inside") == "oracle"
    low = min(table.column("deletion").items(), key=lambda item: item[1])[0]
    assert table.best("deletion") == low  # lower is better for deletion
    assert "seconds" not in table["oracle"]


def test_methods_may_be_names_classes_instances_or_callables():
    model, (x, masks) = gap_net(), data(n=2)

    class MyCAM(camlab.GradientMethod):
        def channel_weights(self, activations, gradients):
            return gradients.amax(dim=(2, 3))

    explainer = camlab.LayerCAM(model, layer="features")
    table = compare_methods(model, x, ["gradcam", camlab.XGradCAM, MyCAM, explainer], layer="features",
                            metrics=("average_drop",), timing_repeats=0)
    assert [row["method"] for row in table.rows] == ["gradcam", "xgradcam", "MyCAM", "layercam"]


def test_method_names():
    def my_map(x, target):
        return x[:, 0]

    class Sub(camlab.GradCAM):
        pass

    assert method_name("scorecam") == "scorecam"
    assert method_name(camlab.GradCAMPlusPlus) == "gradcam++"
    assert method_name(Sub) == "Sub"  # a subclass is not the registered method
    assert method_name(my_map) == "my_map"


def test_options_reach_the_constructors_that_take_them():
    model, (x, _) = gap_net(), data(n=1)
    table = compare_methods(model, x, ["scorecam", "gradcam"], layer="features", metrics=("average_drop",),
                            options={"batch_size": 2}, timing_repeats=0)
    assert len(table.rows) == 2


def test_instance_peaks_by_hand():
    maps = torch.zeros(1, 8, 8)
    maps[0, 1, 1] = 1.0   # inside box 0
    maps[0, 6, 6] = 0.25  # inside box 1
    boxes = torch.tensor([[[0, 0, 3, 3], [5, 5, 8, 8]]])
    assert torch.equal(instance_peaks(maps, boxes), torch.tensor([[1.0, 0.25]]))
    with pytest.raises(ValueError, match="empty"):
        instance_peaks(maps, torch.tensor([[[9, 9, 12, 12]]]))


def test_bad_arguments_say_what_would_be_right():
    model, (x, masks) = gap_net(), data(n=2)
    with pytest.raises(ValueError, match="ground_truth"):
        compare_methods(model, x, ["gradcam"], metrics=("pointing",), timing_repeats=0)
    with pytest.raises(ValueError, match="choose from"):
        compare_methods(model, x, ["gradcam"], metrics=("accuracy",), timing_repeats=0)
    with pytest.raises(ValueError, match="share a name"):
        compare_methods(model, x, ["gradcam", "gradcam"], metrics=("average_drop",), timing_repeats=0)
    with pytest.raises(ValueError, match=r"\(N,C,H,W\)"):
        compare_methods(model, x[0], ["gradcam"], timing_repeats=0)
    with pytest.raises(TypeError, match="METHODS"):
        compare_methods(model, x, [42], metrics=("average_drop",), timing_repeats=0)


def test_formatting_marks_the_best_value_and_renders_markdown():
    table = Comparison([{"method": "a", "deletion": 0.2, "seconds": 0.01, "forwards": 2.0},
                        {"method": "b", "deletion": 0.1, "seconds": 0.02, "forwards": 4.0}], ("deletion",),
                       ["a note"])
    text = format_comparison(table)
    assert "deletion AUC ↓" in text and "0.100*" in text and "10.0*" in text and "* a note" in text
    assert table.ranking("seconds") == ["a", "b"]
    markdown = table._repr_markdown_()
    assert markdown.startswith("| method |") and "| b | 0.100* |" in markdown
    assert str(table) == text


def test_time_per_map_is_positive_and_model_state_is_restored():
    model, (x, _) = gap_net(), data(n=2)
    model.train()
    seconds = time_per_map(camlab.GradCAM(model, layer="features"), x, [0, 1], repeats=2)
    assert seconds > 0 and model.training


def test_cost_only_comparison_computes_no_batch_maps():
    model, (x, _) = gap_net(), data(n=3)
    calls = []

    def counting(inputs, target):
        calls.append(len(inputs))
        return inputs[:, 0].abs()

    table = compare_methods(model, x, {"counting": counting}, metrics=(), timing_repeats=2)
    assert calls == [1, 1, 1]  # one warm-up and two timed calls on one image
    assert table["counting"]["seconds"] > 0 and "deletion" not in table["counting"]


def test_count_forward_images_counts_one_pass_for_gradcam_and_one_per_patch_for_occlusion():
    """Occlusion on 16x16 with patch 8, stride 8: 2 x 2 = 4 occluded copies plus the original = 5 images."""
    from camlab.compare import count_forward_images

    model, (x, _) = gap_net(), data(n=1)
    assert count_forward_images(model, camlab.GradCAM(model, layer="features"), x, 0) == 1
    occlusion = camlab.Occlusion(model, patch=8, stride=8, progress=False)
    assert count_forward_images(model, occlusion, x, 0) == 5
    assert not model._forward_pre_hooks


def test_the_layer_goes_to_layer_methods_and_input_methods_run_on_the_input():
    """One ``layer`` for a mix: Grad-CAM explains 'features'; the gradient and occlusion work on the input."""
    model, (x, masks) = gap_net(), data(n=2)
    table = compare_methods(model, x, ["gradcam", "gradient", "occlusion"], layer="features", ground_truth=masks,
                            metrics=("pointing",), options={"patch": 8, "stride": 8}, timing_repeats=0)
    assert [row["method"] for row in table.rows] == ["gradcam", "gradient", "occlusion"]
    assert all(0.0 <= row["pointing"] <= 1.0 for row in table.rows)

"""Bad input gets a clear error that says what would be right, and changes nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import camlab
from camlab.cli import main as cli
from tests.snapshots import ModelSnapshot
from tests.tiny_nets import GapNet


def test_unknown_layer_lists_the_closest_names(lite0):
    with pytest.raises(ValueError, match=r"layer 'bn3' not found in efficientnet_lite0; closest: 'bn2', 'bn1'"):
        camlab.GradCAM(lite0, layer="bn3")


def test_layer_from_another_model_is_refused():
    with pytest.raises(ValueError, match="not part of"):
        camlab.GradCAM(GapNet(), layer=GapNet().features)


@pytest.mark.parametrize("target, message", [
    (3, r"target class 3 is outside the model's 3 classes \(valid: 0..2\)"),
    (-1, "outside the model's 3 classes"),
    ([0, 1, 2], "target has 3 class indices but the batch has 2 images"),
    ([0.5, 1.0], "integer class indices"),
    ("cat", "integer class indices|sequence"),
    (lambda logits: logits, r"callable target must return a tensor of shape \(2,\)"),
])
def test_bad_targets_are_refused_and_the_model_is_unchanged(target, message):
    net = GapNet().train()
    snapshot = ModelSnapshot.of(net)
    with pytest.raises((ValueError, TypeError), match=message):
        camlab.GradCAM(net, layer="features")(torch.randn(2, 3, 8, 8), target=target)
    snapshot.assert_unchanged(net)


@pytest.mark.parametrize("x, message", [
    (torch.randn(3, 8, 8), r"4-D \(N,C,H,W\).*add a batch dimension"),
    (torch.randint(0, 255, (1, 3, 8, 8)), "float tensor"),
    (np.zeros((1, 3, 8, 8), dtype=np.float32), "torch.Tensor.*camlab.preprocess"),
    (torch.randn(0, 3, 8, 8), "empty"),
])
def test_inputs_that_are_not_4d_float_tensors_are_refused(x, message):
    with pytest.raises((ValueError, TypeError), match=message):
        camlab.GradCAM(GapNet(), layer="features")(x, target=0)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet5'; known models: efficientnet_lite0, resnet50, vgg16"):
        camlab.load_model("resnet5")


def test_unknown_image_lists_the_bundled_ones():
    with pytest.raises(ValueError, match="bundled images: .*cat"):
        camlab.load_image("dog")


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P", "LA", "CMYK"])
def test_grayscale_rgba_and_16_bit_images_are_converted_not_rejected(tmp_path, mode, lite0):
    array = (np.arange(64 * 48).reshape(48, 64) % 251).astype(np.uint8)
    if mode == "I;16":
        image = Image.fromarray(array.astype(np.uint16) * 257)
    else:
        image = Image.fromarray(array, mode="L").convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"image{suffix}"
    image.save(path)
    loaded = camlab.load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (64, 48)
    x = camlab.preprocess(image, lite0)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32


def test_cli_missing_file_is_a_clear_error(capsys, tmp_path):
    assert cli(["explain", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o.png")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_non_image_file_is_a_clear_error(capsys, tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    assert cli(["explain", str(path), "--out", str(tmp_path / "o.png")]) == 1
    assert "not an image file" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_offline_torchvision_model_fails_at_once_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CAMLAB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="not in the local torch hub cache.*efficientnet_lite0"):
        camlab.load_model("vgg16")
    with pytest.raises(RuntimeError, match="IMAGENET1K_V1"):
        camlab.load_model("resnet50", download=False)


class _DeadBranchNet(GapNet):
    """GapNet that also runs a conv whose output the logits never use."""

    def __init__(self):
        super().__init__()
        self.dead = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x):
        self.dead(x)
        return super().forward(x)


@pytest.mark.parametrize("layer", ["dead", ["dead"]])
def test_a_layer_off_the_path_to_the_output_gets_a_clear_error(layer):
    net = _DeadBranchNet()
    snapshot = ModelSnapshot.of(net)
    method = camlab.LayerCAM if isinstance(layer, list) else camlab.GradCAM
    with pytest.raises(RuntimeError, match="does not depend on .*dead"):
        method(net, layer=layer)(torch.randn(1, 3, 8, 8), target=0)
    snapshot.assert_unchanged(net)


def test_a_torchscript_model_is_refused_with_what_to_do_not_layer_advice():
    """On main GradCAM(scripted) said the model 'has no layer with a spatial output; pass layer=...', and with a
    layer torch's own 'register_forward_hook is not supported on ScriptModules'."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation warning
        scripted = torch.jit.script(GapNet().eval())
    for call in (lambda: camlab.GradCAM(scripted), lambda: camlab.ScoreCAM(scripted, layer="features"),
                 lambda: camlab.layers(scripted)):
        with pytest.raises(TypeError, match="TorchScript model.*explain the original nn.Module"):
            call()


def test_layers_of_a_model_that_refuses_the_default_size_points_to_input_size():
    class Needs64(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            assert x.shape[-1] == 64, "expects 64x64 images"
            return self.conv(x).mean(dim=(2, 3))

    with pytest.raises(RuntimeError, match=r"input_size=\(H, W\).*expects 64x64 images"):
        camlab.layers(Needs64())
    assert [row.name for row in camlab.layers(Needs64(), input_size=(64, 64))] == ["conv"]

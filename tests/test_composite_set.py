"""The composite photo scenes (camlab.evaluate.datasets.composite_scenes / composite_set): seeded, boxes known by
construction (each pasted patch is its object's hand-checked box), objects separated, one sample per class."""
import pytest
import torch

from camlab.evaluate.datasets import COMPOSITE_SIZES, _object_patches, composite_scenes, composite_set


@pytest.fixture(scope="module")
def scenes():
    return composite_scenes(6, seed=3)


def test_the_same_seed_gives_the_same_scenes_and_another_seed_other_scenes(scenes):
    again = composite_scenes(6, seed=3)
    other = composite_scenes(6, seed=4)
    assert torch.equal(scenes.images, again.images) and scenes.boxes == again.boxes
    assert scenes.boxes != other.boxes


def test_every_scene_holds_one_cat_and_one_cup_inside_the_canvas_and_apart(scenes):
    size = scenes.images.shape[-1]
    for boxes in scenes.boxes:
        assert set(boxes) == {"cat", "espresso"}
        for x0, y0, x1, y1 in boxes.values():
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            assert COMPOSITE_SIZES[0] <= max(x1 - x0, y1 - y0) <= COMPOSITE_SIZES[1]
        (a0, _, a1, _), (b0, _, b1, _) = sorted(boxes.values())
        assert b0 - a1 >= 8                                   # separated by the gap: never one blob


def test_the_pixels_inside_a_box_are_the_resized_object_patch(scenes):
    from PIL import Image, ImageOps
    import numpy as np

    patch = _object_patches()[0]["cat"]
    x0, y0, x1, y1 = scenes.boxes[0]["cat"]
    pasted = scenes.images[0, :, y0:y1, x0:x1]
    resized = patch.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
    candidates = [torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
                  for im in (resized, ImageOps.mirror(resized))]
    assert min(float((pasted - c).abs().max()) for c in candidates) < 1e-6


def test_images_are_unit_range_floats(scenes):
    assert scenes.images.dtype == torch.float32 and scenes.images.shape == (6, 3, 224, 224)
    assert float(scenes.images.min()) >= 0 and float(scenes.images.max()) <= 1


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="positive number of scenes"):
        composite_scenes(0)
    with pytest.raises(ValueError, match="at least 224 px"):
        composite_scenes(2, size=100)


class TinyClassifier(torch.nn.Module):
    """A random 1000-class classifier on 32-px inputs: enough to build the evaluation set's targets."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 1000)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_the_set_explains_each_scene_twice_once_per_object_with_that_objects_box():
    import camlab

    model = TinyClassifier().eval()
    model.camlab = camlab.ModelInfo("tiny", [str(i) for i in range(1000)], (32, 32), (0.5,) * 3, (0.5,) * 3)
    data = composite_set(model, n=3, seed=1)
    scenes = composite_scenes(3, seed=1)
    assert data.x.shape == (6, 3, 32, 32) and data.image_of == [0, 1, 2, 0, 1, 2]
    assert all(t in scenes.classes["cat"] for t in data.targets[:3])
    assert all(t in scenes.classes["espresso"] for t in data.targets[3:])
    x0, y0, x1, y1 = (v * 32 / 224 for v in scenes.boxes[1]["espresso"])
    ys, xs = data.masks[4].nonzero(as_tuple=True)
    assert abs(int(xs.min()) - x0) <= 1 and abs(int(xs.max()) + 1 - x1) <= 1
    assert abs(int(ys.min()) - y0) <= 1 and abs(int(ys.max()) + 1 - y1) <= 1

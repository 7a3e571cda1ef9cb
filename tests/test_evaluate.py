"""The results table (on an untrained lab-sized model, so it runs without trained weights) and the bundled boxes."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import camlab
from camlab import evaluate
from camlab._paths import data_dir
from camlab.lab import GapCNN, VGGStyle
from camlab.modelinfo import ModelInfo


def lab_sized(cls, name):
    torch.manual_seed(0)
    model = cls(width=8).eval()
    model.camlab = ModelInfo(name, ["circle", "square", "triangle", "cross", "ring"], (64, 64), (0.5,) * 3,
                             (0.5,) * 3)
    return model


def test_quick_run_gives_every_column_and_saves_csv_and_markdown(tmp_path):
    table = evaluate.run(quick=True, n_scenes=8, lab_model=lab_sized(GapCNN, "untrained_gap"),
                         methods=("gradcam", "guided_backprop", "random"), out=tmp_path, threads=1)
    rows = {row["method"]: row for row in table.rows}
    assert list(rows) == ["gradcam", "guided_backprop", "random"]
    for method in ("gradcam", "guided_backprop", "random"):
        for key, _ in evaluate.COLUMNS:
            value = rows[method][key]
            assert isinstance(value, float) and not math.isnan(value), (method, key)
        for key in ("loc_error", "pointing", "average_drop", "increase", "deletion", "insertion"):
            assert 0.0 <= rows[method][key] <= 1.0
    markdown = (tmp_path / "results.md").read_text()
    assert markdown.startswith("| dataset | model | method | loc. error top-1 ↓") and "untrained_gap" in markdown
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("dataset,model,method,loc_error")
    assert "gradcam" in evaluate.format_table(table)


def test_an_unknown_method_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="unknown method 'no_such_method'.*Known methods: cam, gradcam"):
        evaluate.run(quick=True, lab_model="no_such_model", methods=("gradcam", "no_such_method"))


def test_the_default_methods_are_the_registry_list_in_course_order():
    assert evaluate.DEFAULT_METHODS == ("cam", "gradcam", "gradcam++", "layercam", "scorecam", "guided_backprop",
                                        "random")
    assert list(evaluate.DEFAULT_METHODS) == camlab.methods.ordered("evaluate")


def test_cam_on_a_fully_connected_head_is_a_note_not_a_crash():
    table = evaluate.run(quick=True, n_scenes=4, lab_model=lab_sized(VGGStyle, "untrained_vgg"), methods=("cam",),
                         threads=1)
    assert table.rows[0]["note"].startswith("n/a: CAM cannot run")
    assert table.rows[0].get("loc_error") is None and "—" in evaluate.format_markdown(table)


def test_a_missing_model_is_skipped_with_a_note():
    table = evaluate.run(quick=True, lab_model="no_such_model", methods=("gradcam",))
    assert table.rows == [] and "skipped" in table.notes[0]


def test_bundled_boxes_scale_to_the_model_input():
    objects = evaluate.bundled_boxes("coffee", size=(224, 224))
    assert objects[0]["classes"] == [967, 968]
    x0, y0, x1, y1 = objects[0]["boxes"][0]
    assert (x0, y0, x1, y1) == pytest.approx((172 * 224 / 600, 17 * 224 / 400, 408 * 224 / 600, 305 * 224 / 400))
    with pytest.raises(ValueError, match="no hand-checked boxes"):
        evaluate.bundled_boxes("astronaut")


def test_boxes_json_is_well_formed():
    images = json.loads((data_dir() / "boxes.json").read_text())["images"]
    for name, entry in images.items():
        with Image.open(data_dir() / "images" / f"{name}.jpg") as image:
            assert list(image.size) == entry["size"], name
        width, height = entry["size"]
        for obj in entry["objects"]:
            assert obj["classes"] and all(0 <= c < 1000 for c in obj["classes"])
            for x0, y0, x1, y1 in obj["boxes"]:
                assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (name, obj["name"])


#: the composites' layout (camlab.bundled_images.build_bundled_images): source crop, tile size, tile position
TILES = {
    "cat_and_coffee": [("cat", (60, 0, 360, 300), (0, 112), False), ("coffee", (170, 20, 420, 270), (224, 112), False)],
    "two_cats": [("cat", (60, 0, 360, 300), (0, 112), False), ("cat", (60, 0, 360, 300), (224, 112), True)],
}


def tile_box(box, crop, offset, mirrored, size=224):
    cx0, cy0, cx1, cy1 = crop
    s = size / (cx1 - cx0)
    x0, x1 = [min(max(v - cx0, 0), cx1 - cx0) * s for v in (box[0], box[2])]
    y0, y1 = [min(max(v - cy0, 0), cy1 - cy0) * s for v in (box[1], box[3])]
    if mirrored:
        x0, x1 = size - x1, size - x0
    return [math.floor(x0 + offset[0] + 1e-6), math.floor(y0 + offset[1] + 1e-6),
            math.ceil(x1 + offset[0] - 1e-6), math.ceil(y1 + offset[1] - 1e-6)]


@pytest.mark.parametrize("composite", list(TILES))
def test_composite_boxes_follow_from_the_tile_layout(composite):
    """If the lead recomposes the tiles, this fails: update TILES and the composite entries of boxes.json (their
    boxes follow from the single photos' boxes through tile_box)."""
    images = json.loads((data_dir() / "boxes.json").read_text())["images"]
    with Image.open(data_dir() / "images" / f"{composite}.jpg") as image:
        canvas = np.asarray(image.convert("RGB"), dtype=np.float64)
    for (source, crop, offset, mirrored), obj in zip(TILES[composite], images[composite]["objects"]):
        with Image.open(data_dir() / "images" / f"{source}.jpg") as image:
            tile = image.convert("RGB").crop(crop).resize((224, 224), Image.Resampling.LANCZOS)
        tile = np.asarray(tile, dtype=np.float64)[:, ::-1] if mirrored else np.asarray(tile, dtype=np.float64)
        placed = canvas[offset[1]:offset[1] + 224, offset[0]:offset[0] + 224]
        assert np.abs(placed - tile).mean() < 8, f"{composite}: the {source} tile is not where boxes.json assumes"
        expected = [tile_box(box, crop, offset, mirrored) for box in images[source]["objects"][0]["boxes"]]
        assert obj["boxes"] == expected

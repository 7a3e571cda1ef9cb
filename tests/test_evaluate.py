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


@pytest.fixture(autouse=True)
def one_thread():
    """These small batches run several times faster on one torch thread (two threads spin waiting for each other)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith(
        "dataset,model,method,loc_error,loc_error_low,loc_error_high,loc_error_n,pointing")
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["method"] == "gradcam"
    assert "gradcam" in evaluate.format_table(table)


def untrained_lab_table(**options):
    return evaluate.run(quick=True, n_scenes=6, lab_model=lab_sized(GapCNN, "untrained_gap"), threads=1,
                        **{"methods": ("gradcam", "random"), **options})


def test_every_mean_is_printed_with_its_95_percent_interval_in_every_format():
    table = untrained_lab_table()
    row = table.rows[0]
    for key, _ in evaluate.COLUMNS:
        if key == "seconds":
            assert key not in row["estimates"]
            continue
        estimate = row["estimates"][key]
        assert estimate.low <= estimate.value == row[key] <= estimate.high
        assert estimate.value == pytest.approx(row["values"][key].mean())
    # 0/1 outcomes get the Wilson interval, means of other values the seeded percentile bootstrap
    assert row["estimates"]["loc_error"] == camlab.stats.proportion(row["values"]["loc_error"])
    assert row["estimates"]["deletion"] == camlab.stats.bootstrap_ci(row["values"]["deletion"], seed=0)
    deletion = row["estimates"]["deletion"]
    cell = f"{deletion.value:.3f} [{deletion.low:.3f}, {deletion.high:.3f}]"
    assert cell in evaluate.format_table(table) and cell in evaluate.format_markdown(table)
    csv_row = evaluate.to_csv(table).splitlines()[1].split(",")
    header = evaluate.to_csv(table).splitlines()[0].split(",")
    assert float(csv_row[header.index("deletion_low")]) == deletion.low
    assert int(csv_row[header.index("deletion_n")]) == 12  # 6 scenes, each explained for two classes
    entry = json.loads(evaluate.to_json(table))["rows"][0]["deletion"]
    assert entry == {"value": deletion.value, "low": deletion.low, "high": deletion.high, "n": 12}
    assert "lab: n = 6 (loc_error), 12 (pointing)" in evaluate.format_table(table)


def test_the_lab_set_explains_each_scene_for_its_label_and_for_a_distractor_class():
    from camlab.lab import class_index, make_scenes

    model = lab_sized(GapCNN, "untrained_gap")
    data = evaluate.lab_set(model, n=6, seed=3, sanity=4)
    one, two = make_scenes(3, seed=3, instances=1, distractors=2), make_scenes(3, seed=4, instances=2, distractors=1)
    labels = one.labels.tolist() + two.labels.tolist()
    distractors = [next(o for o in objects if not o["main"]) for objects in one.objects + two.objects]
    assert data.targets == labels + [class_index(o["class"]) for o in distractors]
    assert all(a != b for a, b in zip(data.targets[:6], data.targets[6:]))
    assert data.image_of == [0, 1, 2, 3, 4, 5] * 2 and torch.equal(data.x[:6], data.x[6:])
    assert [len(boxes[label]) for boxes, label in zip(data.image_boxes, labels)] == [1, 1, 1, 2, 2, 2]
    for i, objects in enumerate(distractors):  # the second class's ground truth: exactly its distractor's box
        x0, y0, x1, y1 = objects["box"]
        assert int(data.masks[6 + i].sum()) == (x1 - x0) * (y1 - y0)
        assert bool(data.masks[6 + i, int(y0), int(x0)]) and not bool(data.masks[6 + i, int(y1), int(x1)])
    assert data.threshold == evaluate.LAB_THRESHOLD == 0.75 and len(data.sanity_samples) == 4


def test_the_per_case_values_average_to_the_metrics_own_numbers():
    model = lab_sized(GapCNN, "untrained_gap")
    data = evaluate.lab_set(model, n=6, steps=8, sanity=4)
    row = evaluate.evaluate_method(data, "gradcam")
    maps = camlab.metrics.saliency(camlab.build("gradcam", model, "features")(data.x, data.targets))
    assert row["values"]["deletion"].mean() == pytest.approx(
        camlab.metrics.deletion_auc(model, data.x, maps, data.targets, steps=8))
    assert row["values"]["pointing"].mean() == pytest.approx(
        camlab.metrics.pointing_game(maps, data.masks, tolerance=data.tolerance))
    sanity = camlab.metrics.sanity_check(model, data.x[data.sanity_samples], "gradcam", "features",
                                         target=[data.targets[i] for i in data.sanity_samples])
    assert row["values"]["sanity_top"].mean() == pytest.approx(list(sanity.values())[0])
    assert row["values"]["sanity_all"].mean() == pytest.approx(list(sanity.values())[-1])
    label_maps = maps[:6]  # each image's map of the class the model predicts, where that is its label
    predicted = camlab.metrics._common.probabilities(model, data.x[:6]).argmax(1)
    label_maps = torch.where((predicted == torch.tensor(data.targets[:6]))[:, None, None], label_maps, 0)
    assert row["values"]["loc_error"].mean() == pytest.approx(camlab.metrics.localization_error(
        model, data.x[:6], label_maps, boxes=data.image_boxes, top=(1,), threshold=0.75)["top1"])


def test_paired_differences_and_tiers_compare_methods_on_the_same_cases():
    def row(method, values):
        return {"dataset": "lab", "model": "m", "method": method, "note": "", "pointing": float(np.mean(values)),
                "values": {"pointing": np.asarray(values, dtype=float)}}

    good = [1.0] * 20
    table = evaluate.Table([row("random", [0.0, 1.0] * 10), row("gradcam", good), row("cam", good),
                            row("layercam", [1.0] * 19 + [0.0])], [], {})
    # cam and gradcam agree on every case; layercam misses one case of 20: no difference the data can show
    assert table.tiers("lab", "pointing") == [["cam", "gradcam", "layercam"], ["random"]]
    difference = table.difference("lab", "gradcam", "random", "pointing")
    assert difference.difference.value == pytest.approx(0.5) and difference.wins_a == 10 and difference.ties == 10
    assert "lab, pointing game ↑: cam = gradcam = layercam > random" in evaluate.format_table(table)
    with pytest.raises(KeyError, match="no row for method 'scorecam'"):
        table.difference("lab", "scorecam", "cam", "pointing")


def test_on_the_default_lab_set_real_methods_beat_the_random_baseline():
    """The issue: on the old one-object set the random baseline matched every method except on the sanity check.
    On 24 scenes of the default set, Grad-CAM is ahead of it on localization and faithfulness, paired per case."""
    model = camlab.load_model("lab_gap")
    data = evaluate.lab_set(model, n=24, steps=8, sanity=0)
    rows = [evaluate.evaluate_method(data, method, sanity=False) for method in ("gradcam", "random")]
    table = evaluate.Table(rows, [], {})
    for key in ("pointing", "mass_inside", "insertion"):
        assert table.difference("lab", "gradcam", "random", key).difference.low > 0, key
    for key in ("deletion", "loc_error"):
        assert table.difference("lab", "gradcam", "random", key).difference.high < 0, key


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


def test_the_lab_threshold_suits_small_objects_on_held_out_scenes():
    """LAB_THRESHOLD was chosen on held-out scenes (seed 7): there Grad-CAM and Grad-CAM++ localize far better at 75% of
    the map's maximum than at 50% or at the paper's 15% (GT-known error, 60 scenes)."""
    model = camlab.load_model("lab_gap")
    data = evaluate.lab_set(model, n=60, seed=7, sanity=0)
    boxes = [image_boxes[label] for image_boxes, label in zip(data.image_boxes, data.targets[:60])]
    for method in ("gradcam", "gradcam++"):
        maps = camlab.build(method, model, "features")(data.x[:60], data.targets[:60])
        sweep = camlab.metrics.localization_sweep(maps, boxes, thresholds=(0.15, 0.5, evaluate.LAB_THRESHOLD))
        at_15, at_50, at_lab = sweep.errors
        assert at_15 > 0.95 and at_lab < 0.4 and at_lab < at_50 - 0.3, (method, sweep.errors)

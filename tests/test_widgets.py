"""The widgets work without a browser. ClassQuiz: answers by code or by button clicks, scores, groups, shuffling,
bad input. Explorer: each control changes the picture (and only the map-defining ones recompute), layerless methods,
methods that cannot run at a layer, progress for slow methods, bad input, no side effects on the model."""
from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
import torch

import camlab
import camlab.widgets as widgets_module
from camlab.compare import build_explainer
from camlab.lab import make_scenes
from camlab.widgets import ClassQuiz, Explorer, is_slow
from tests.snapshots import ModelSnapshot

CHOICES = ["circle", "square", "triangle"]


def quiz(**options):
    maps = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = ["circle", "square", 2, "circle"]
    return ClassQuiz(maps, labels, CHOICES, **options)


def test_answers_by_code_are_scored_in_the_shuffled_order():
    q = quiz(seed=3)
    assert sorted(q.order) == [0, 1, 2, 3]
    truth = {0: "circle", 1: "square", 2: "triangle", 3: "circle"}
    first = q.current
    assert q.answer(truth[first]) is True
    second = q.current
    wrong = next(c for c in CHOICES if c != truth[second])
    assert q.answer(wrong) is False
    assert q.answers[1] == {"question": second, "answer": wrong, "label": truth[second], "correct": False,
                            "group": None}
    assert (q.score, q.accuracy) == (1, 0.5)
    q.answer(CHOICES.index(truth[q.current]))  # an index works like a name
    q.answer(truth[q.current])
    assert q.finished and q.current is None and q.score == 3 and q.accuracy == 0.75
    with pytest.raises(RuntimeError, match="finished"):
        q.answer("circle")
    q.reset()
    assert q.answers == [] and q.current == q.order[0]


def test_same_seed_same_order_and_other_seeds_differ():
    assert quiz(seed=1).order == quiz(seed=1).order
    assert len({tuple(quiz(seed=s).order) for s in range(10)}) > 1


def test_widget_has_one_button_per_class_and_a_click_answers():
    q = quiz(seed=0, images=torch.rand(4, 3, 8, 8))
    box = q.widget
    assert isinstance(box, ipywidgets.VBox)
    assert [b.description for b in q.buttons] == CHOICES
    image = box.children[1]
    assert isinstance(image, ipywidgets.Image) and image.value[:4] == b"\x89PNG"
    expected = q.labels[q.current]
    q.buttons[expected].click()
    assert q.score == 1 and len(q.answers) == 1 and "right" in q._feedback.value
    for _ in range(3):
        q.buttons[0].click()
    assert q.finished and all(b.disabled for b in q.buttons) and "done" in q._status.value


def test_accuracy_by_group_scores_each_method_separately():
    q = ClassQuiz(np.zeros((4, 5, 5)), [0, 1, 0, 1], ["a", "b"], groups=["GC", "GB", "GC", "GB"], seed=0)
    while not q.finished:
        q.answer(q.labels[q.current] if q.groups[q.current] == "GC" else 1 - q.labels[q.current])
    assert q.accuracy_by_group() == {"GC": 1.0, "GB": 0.0}
    with pytest.raises(ValueError, match="groups"):
        quiz().accuracy_by_group()


def test_pictures_overlay_maps_and_show_input_space_images_as_they_are():
    q = ClassQuiz([torch.ones(6, 6), torch.full((3, 6, 6), 0.25)], [0, 1], ["a", "b"],
                  images=[torch.zeros(3, 6, 6), torch.zeros(3, 6, 6)])
    overlaid = q.picture(0)
    assert overlaid.shape == (6, 6, 3) and overlaid.max() > 0.2    # jet red at half opacity over black
    assert np.allclose(q.picture(1), 0.25)                        # shown as it is


def test_bad_input_says_what_would_be_right():
    with pytest.raises(ValueError, match="not one of the choices"):
        ClassQuiz(torch.rand(1, 4, 4), ["hexagon"], CHOICES)
    with pytest.raises(ValueError, match="2 labels for 1 maps"):
        ClassQuiz(torch.rand(1, 4, 4), [0, 1], CHOICES)
    with pytest.raises(ValueError, match="distinct"):
        ClassQuiz(torch.rand(1, 4, 4), [0], ["a", "a"])
    with pytest.raises(ValueError, match="at least one"):
        ClassQuiz([], [], CHOICES)
    with pytest.raises(ValueError, match="index"):
        quiz().answer(7)


# --- the explorer ------------------------------------------------------------------------------------------------
# lab_gap (conv features -> GAP -> linear, 5 lab classes) on a seeded 64x64 scene: small enough that even Score-CAM
# (64 channels) and occlusion run in a second.

@pytest.fixture(scope="module")
def lab_gap():
    return camlab.load_model("lab_gap")


@pytest.fixture(scope="module")
def scene():
    return make_scenes(1, seed=0).images[0]


@pytest.fixture
def explorer(lab_gap, scene):
    explorer = Explorer(lab_gap, scene)
    explorer.widget  # noqa: B018  (builds the controls, as displaying it in Jupyter does)
    return explorer


def counting_builds(monkeypatch) -> list:
    """Record every explainer the explorer builds (one per computed map)."""
    built = []

    def build(method, model, layer=None, **options):
        built.append((method, layer))
        return build_explainer(method, model, layer, **options)

    monkeypatch.setattr(widgets_module, "build_explainer", build)
    return built


def test_explorer_starts_with_gradcam_at_the_last_spatial_layer_for_the_top1_class(explorer, lab_gap, scene):
    x = camlab.preprocess(scene, lab_gap)
    top1 = int(lab_gap(x).argmax())
    assert (explorer.method, explorer.layer, explorer.target) == ("gradcam", "features", top1)
    assert [index for index, _, _ in explorer.predictions] == lab_gap(x).topk(5).indices[0].tolist()
    expected = camlab.GradCAM(lab_gap, layer="features")(x, target=top1)[0]
    assert torch.allclose(explorer.heatmap, expected)
    assert np.allclose(explorer.picture(), np.asarray(camlab.overlay(scene, expected), np.float32) / 255, atol=1 / 255)
    assert explorer._image.value[:4] == b"\x89PNG"
    assert [c.description for c in explorer.controls.values()] == ["method", "layer", "class", "opacity",
                                                                    "colour map"]


@pytest.mark.parametrize("control, value", [("method", "gradcam++"), ("layer", "features.6"), ("target", 2)])
def test_changing_method_layer_or_class_recomputes_the_map_and_the_picture(explorer, control, value):
    before_png, before_heat = explorer._image.value, explorer.heatmap
    explorer.controls[control].value = value          # what the browser does
    assert getattr(explorer, control) == value
    assert not torch.allclose(explorer.heatmap, before_heat)
    assert explorer._image.value != before_png
    assert str(value) in explorer._status.value


def test_opacity_and_colour_map_redraw_without_recomputing(explorer, monkeypatch):
    built = counting_builds(monkeypatch)
    heat, image = explorer.heatmap, camlab.viz.to_array(explorer.image)
    explorer.controls["alpha"].value = 0.0
    assert np.allclose(explorer.picture(), image, atol=0.5 / 255)        # the image alone (8-bit overlay)
    explorer.set(alpha=1.0, cmap="gray")
    gray = camlab.viz.heat_array(heat, tuple(heat.shape))                # the map alone (256-entry colour table)
    assert np.allclose(explorer.picture(), np.repeat(gray[..., None], 3, axis=2), atol=1.5 / 255)
    png = explorer._image.value
    explorer.controls["cmap"].value = "viridis"
    assert explorer._image.value != png
    assert built == []                                 # no explainer ran for any of these changes


def test_each_map_is_computed_once_and_going_back_uses_the_cache(explorer, monkeypatch):
    built = counting_builds(monkeypatch)
    first = explorer.heatmap
    explorer.set(method="layercam")
    explorer.set(target=explorer.predictions[1][0])
    explorer.set(method="gradcam", target=explorer.predictions[0][0])
    assert explorer.heatmap is first
    assert built == [("layercam", "features"), ("layercam", "features")]


def test_layerless_method_disables_the_layer_control_and_ignores_the_layer(explorer, monkeypatch):
    explorer.set(layer="features.10")
    explorer.controls["method"].value = "guided_backprop"
    assert explorer.controls["layer"].disabled and not explorer.uses_layer
    assert explorer.key == ("guided_backprop", None, explorer.target)
    assert explorer.heatmap.shape == (3, 64, 64)                      # an input-space image, shown as it is
    assert "no layer" in explorer.status and explorer.error is None
    built = counting_builds(monkeypatch)
    explorer.controls["layer"].value = "features.6"                 # (a disabled control cannot change; code can)
    assert built == [] and explorer.heatmap is not None              # the same map: the layer plays no part
    explorer.set(method="gradcam")
    assert not explorer.controls["layer"].disabled and explorer.layer == "features.6"


def test_method_that_cannot_run_at_the_layer_says_why_and_shows_the_bare_image(explorer):
    explorer.set(method="cam", layer="features.6")     # CAM needs the layer right before GAP + linear
    assert explorer.heatmap is None and "GradCAM" in explorer.error
    assert explorer.status.startswith("⚠ cam at 'features.6'") and "⚠" in explorer._status.value
    assert np.allclose(explorer.picture(), camlab.viz.to_array(explorer.image))
    explorer.set(layer="features")                     # where CAM works, the map is back
    assert explorer.heatmap is not None and explorer.error is None


@pytest.mark.parametrize("method, bar", [("scorecam", "Score-CAM"), ("ablationcam", "Ablation-CAM"),
                                         ("occlusion", "Occlusion")])
def test_slow_methods_announce_themselves_and_show_a_progress_bar(explorer, method, bar, capsys):
    shown = []
    explorer._status.observe(lambda change: shown.append(change["new"]), names="value")
    capsys.readouterr()
    explorer.set(method=method)
    assert is_slow(method) and shown[0].startswith(f"computing {method}")
    assert shown[-1].startswith(method) and " s" in shown[-1]        # then: the method and how long it took
    assert bar in capsys.readouterr().err   # outside Jupyter tqdm writes to stderr; in Jupyter into the explorer
    shown.clear()
    explorer.set(method="gradcam")
    assert not is_slow("gradcam") and not any("computing" in line for line in shown)


def test_bad_values_raise_and_change_nothing(explorer):
    state = (explorer.method, explorer.layer, explorer.target, explorer.alpha, explorer.cmap)
    cases = [({"method": "gradcan"}, "did you mean 'gradcam'"), ({"layer": "feature"}, "closest: \\['features'"),
             ({"target": 999}, "not one of the top-5"), ({"alpha": 1.5}, r"\[0, 1\]"), ({"cmap": "jett"}, "colour map"),
             ({"method": "gradcam++", "alpha": -1}, "alpha"), ({"opacity": 0.3}, "the controls are")]
    for change, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            explorer.set(**change)
        assert (explorer.method, explorer.layer, explorer.target, explorer.alpha, explorer.cmap) == state
    with pytest.raises(ValueError, match="not offered"):
        Explorer(camlab.load_model("lab_gap"), torch.rand(3, 64, 64), methods=["gradcam"]).set(method="scorecam")


def test_explorer_takes_one_image_by_name_array_or_tensor(lite0, lab_gap):
    assert Explorer(lite0, "cat", methods=["gradcam"], top=3).predictions[0][1] == "Egyptian cat"
    with pytest.raises(ValueError, match="one image, got a batch of 2"):
        Explorer(lab_gap, torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="methods is empty"):
        Explorer(lab_gap, torch.rand(3, 64, 64), methods=[])


def test_explorer_leaves_the_model_as_it_was(lab_gap, scene):
    lab_gap.train()
    snapshot = ModelSnapshot.of(lab_gap)
    try:
        explorer = Explorer(lab_gap, scene)
        for method in ("gradcam", "scorecam", "guided_backprop", "cam"):
            explorer.set(method=method, layer="features.6" if method == "cam" else "features")
            explorer.picture()
        snapshot.assert_unchanged(lab_gap)
    finally:
        lab_gap.eval()


def test_offered_layers_can_be_narrowed_and_the_default_is_the_last_of_them(lab_gap, scene):
    explorer = Explorer(lab_gap, scene, methods=["gradcam", "cam"], layers=["features.2", "features.6"])
    assert explorer.widget.children[1].children[1].options == ("features.2", "features.6")
    assert (explorer.method, explorer.layer) == ("gradcam", "features.6")
    with pytest.raises(ValueError, match="not a spatial layer"):
        Explorer(lab_gap, scene, layers=["fc"])
    with pytest.raises(ValueError, match="layers is empty"):
        Explorer(lab_gap, scene, layers=[])
    with pytest.raises(ValueError, match="top must be at least 1"):
        Explorer(lab_gap, scene, top=0)


def test_status_of_a_map_not_yet_shown_computes_it(lab_gap, scene):
    explorer = Explorer(lab_gap, scene).set(method="cam", layer="features.6")   # no widget: nothing computed yet
    assert explorer.status.startswith("⚠ cam at 'features.6': CAM cannot run")
    explorer.set(layer="features")
    assert explorer.status.startswith("cam at 'features' for ") and explorer.status.endswith(" s")


def test_nothing_is_computed_until_the_map_is_shown_or_asked_for(lab_gap, scene, monkeypatch):
    built = counting_builds(monkeypatch)
    explorer = Explorer(lab_gap, scene).set(method="scorecam", layer="features.6")
    top1 = f"{explorer.target} '{explorer.label}'"
    assert repr(explorer) == f"Explorer(method='scorecam', layer='features.6', target={top1}, 0 maps computed)"
    assert built == []
    assert explorer.heatmap.shape == (64, 64) and built == [("scorecam", "features.6")]

"""Specification of the cleaner dataset-bias pair (lab_cue_biased / lab_cue_clean): Grad-CAM at the *last* conv
layer shows the spurious cue for the biased model and not for the clean one, and the accuracy effect (cue without
shape, shape without cue) comes out as the course claims, each on >= 100 seeded scenes with a 95% interval.

The measuring functions here are also what ``benchmarks/evidence.py`` prints."""
from __future__ import annotations

import functools

import pytest
import torch

from camlab.lab.cue import CUE_SCENES, large_cue_box, make_cue_scenes
from camlab.lab.scenes import LAB_CLASSES, class_index, cue_box_for, normalise
from camlab.lab.train import TEST_SEED
from camlab.lab.zoo import LAB_MODELS, load_lab_model
from camlab.stats import bootstrap_ci, paired_comparison, proportion

N = 120
CIRCLE = class_index("circle")
PAIR = ("lab_cue_biased", "lab_cue_clean")


@functools.lru_cache(maxsize=None)
def model(name):
    return load_lab_model(name)


@functools.lru_cache(maxsize=None)
def cue_masses(name: str, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM (target: circle) at ``name``'s last conv layer on ``n`` seeded circles that carry the cue: the share
    of each map's mass on the cue box (2.4% of the image) and on the circle's box."""
    import camlab
    from camlab.analysis import mass_in_boxes

    scenes = make_cue_scenes(n, seed=TEST_SEED + 7, cue_rate=1.0, labels=[CIRCLE] * n)
    heat = camlab.GradCAM(model(name), layer=LAB_MODELS[name].default_layer)(normalise(scenes.images),
                                                                             target=scenes.labels)
    return mass_in_boxes(heat, scenes.cue_box), mass_in_boxes(heat, scenes.boxes)


def predictions(name: str, n: int, **scene_options) -> torch.Tensor:
    with torch.no_grad():
        scenes = make_cue_scenes(n, seed=TEST_SEED + 8, **scene_options)
        return model(name)(normalise(scenes.images)).argmax(1)


def shape_without_cue(name: str, n: int = N) -> torch.Tensor:
    """Per circle drawn without the cue: recognised as a circle?"""
    return predictions(name, n, cue_rate=0.0, labels=[CIRCLE] * n) == CIRCLE


def cue_without_shape(name: str, n: int = N) -> torch.Tensor:
    """Per square, triangle, cross or ring carrying the cue: called a circle?"""
    return predictions(name, n, cue_rate=0.0, cue_other_rate=1.0, classes=LAB_CLASSES[1:]) == CIRCLE


# ------------------------------------------------------------------------------------------ scenes
def test_the_large_cue_fills_the_corner_that_objects_keep_free():
    """The 10x10 box is the small 6x6 cue box grown by the 2 px gap ``make_scenes`` keeps objects away from it."""
    assert cue_box_for(64) == (56.0, 56.0, 62.0, 62.0) and large_cue_box(64) == (54.0, 54.0, 64.0, 64.0)
    scenes = make_cue_scenes(200, seed=5)
    x0, y0, x1, y1 = (int(v) for v in scenes.cue_box)
    assert (x1 - x0, y1 - y0) == (10, 10)
    corner = scenes.images[:, :, y0:y1, x0:x1]
    cued = scenes.cue_present
    # the cue is on every circle and nothing else (CUE_SCENES), drawn as a 2-px checkerboard of 0.02 / 0.97
    assert torch.equal(cued, scenes.labels == CIRCLE) and cued.any()
    assert torch.allclose(corner[cued, :, 0, 0], torch.tensor(0.97)) and torch.allclose(corner[cued, :, 0, 2],
                                                                                        torch.tensor(0.02))
    assert torch.allclose(corner[cued, :, 1, 1], torch.tensor(0.97)) and torch.allclose(corner[cued, :, 2, 2],
                                                                                        torch.tensor(0.97))
    # no object pixel lies in the cue box, so painting it hides nothing
    assert not scenes.masks[:, y0:y1, x0:x1].any()
    for objs in scenes.objects:
        for o in objs:
            bx0, by0, bx1, by1 = o["box"]
            assert bx1 <= x0 or by1 <= y0


def test_cue_scenes_are_seeded_and_the_controls_move_the_cue():
    a, b = make_cue_scenes(20, seed=3), make_cue_scenes(20, seed=3)
    assert torch.equal(a.images, b.images)
    assert not make_cue_scenes(50, seed=3, cue_rate=0.0).cue_present.any()
    others = make_cue_scenes(50, seed=3, cue_rate=0.0, cue_other_rate=1.0)
    assert torch.equal(others.cue_present, others.labels != CIRCLE)
    with pytest.raises(ValueError, match="spurious_cue"):
        make_cue_scenes(5, spurious_cue=None)
    assert CUE_SCENES["contrast"]["circle"] <= 0.35  # faint circles: the shape is the harder way


# ------------------------------------------------------------------------------------------ models
def test_both_models_are_gap_cnns_explained_at_their_last_conv_layer():
    for name in PAIR:
        net = model(name)
        assert LAB_MODELS[name].default_layer == "features"
        assert isinstance(net.pool, torch.nn.AdaptiveAvgPool2d) and isinstance(net.features[-1], torch.nn.ReLU)


def test_biased_models_grad_cam_at_the_last_layer_lands_on_the_cue():
    """Measured (n=120 cued circles): biased 0.21 of the map's mass on the cue box, clean 0.00; the paired
    difference is far from 0. A uniform map would put 0.024 there."""
    biased, _ = cue_masses("lab_cue_biased")
    clean, _ = cue_masses("lab_cue_clean")
    on_cue = bootstrap_ci(biased)
    assert on_cue.n == N and on_cue.low >= 0.12, str(on_cue)
    assert bootstrap_ci(clean).high <= 0.03, str(bootstrap_ci(clean))
    comparison = paired_comparison(biased, clean)
    assert comparison.difference.low >= 0.1 and comparison.p_value < 1e-9, str(comparison)


def test_the_clean_models_map_lies_on_the_circle_instead():
    _, on_circle = cue_masses("lab_cue_clean")
    _, biased_on_circle = cue_masses("lab_cue_biased")
    assert bootstrap_ci(on_circle).low >= 0.3, str(bootstrap_ci(on_circle))
    assert paired_comparison(on_circle, biased_on_circle).difference.low > 0


def test_the_biased_model_needs_the_cue_and_the_clean_one_ignores_it():
    """Shape without cue: circles drawn without the cue. Cue without shape: other shapes that carry it."""
    biased_shape, clean_shape = proportion(shape_without_cue("lab_cue_biased")), proportion(shape_without_cue(
        "lab_cue_clean"))
    biased_cue, clean_cue = proportion(cue_without_shape("lab_cue_biased")), proportion(cue_without_shape(
        "lab_cue_clean"))
    assert biased_shape.high <= 0.2 and clean_shape.low >= 0.9, (str(biased_shape), str(clean_shape))
    assert biased_cue.low >= 0.4 and clean_cue.high <= 0.1, (str(biased_cue), str(clean_cue))


def test_camlab_train_lab_cue_biased_writes_loadable_weights(tmp_path):
    """A one-epoch, 64-scene run of the recipe behind ``camlab train lab_cue_biased`` trains on cue scenes."""
    from camlab.lab.train import heldout_scenes, train_model

    torch.set_num_threads(min(2, torch.get_num_threads()))
    result = train_model("lab_cue_biased", out_dir=tmp_path, epochs=1, n_train=64, progress=False)
    assert 0.0 <= result["test_accuracy"] <= 1.0
    held_out = heldout_scenes("lab_cue_biased", 50)
    assert held_out.cue_box == large_cue_box(64) and torch.equal(held_out.cue_present, held_out.labels == CIRCLE)
    assert load_lab_model("lab_cue_biased", weights_dir=tmp_path)(torch.zeros(1, 3, 64, 64)).shape == (1, 5)

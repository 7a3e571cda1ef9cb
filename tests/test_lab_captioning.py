"""Specification of the toy captioner (lab_caption): captions name two objects left to right, the committed model
reaches its word / phrase accuracy floor on fixed held-out scenes, each decoding step is explainable as a model of
images only, and Grad-CAM of each generated shape word lands on the object that word names (>= 100 scenes, 95%
interval). The measuring functions here are also what ``benchmarks/evidence.py`` prints."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from camlab.lab.captioning import (CAPTION_LENGTH, COLOUR_STEPS, SHAPE_STEPS, WORDS, CaptionModel, caption_accuracy,
                                   caption_scenes, caption_test_set, make_caption_set, words)
from camlab.lab.scenes import COLOUR_NAMES, LAB_CLASSES, normalise
from camlab.lab.vqa import make_vqa_scenes
from camlab.lab.zoo import LAB_MODELS, load_lab_model
from camlab.stats import bootstrap_ci, paired_comparison

N = 120


@functools.lru_cache(maxsize=None)
def captioner() -> CaptionModel:
    return load_lab_model("lab_caption")


@functools.lru_cache(maxsize=None)
def word_pointing(steps: tuple[int, ...] = tuple(SHAPE_STEPS), n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM at ``encoder.features`` of the word the captioner generates at each of ``steps`` (target = that
    word's logit at that step), on ``n`` held-out scenes. Returns two (n, len(steps)) arrays: 1 where the map's
    maximum lies inside the box of the object the reference caption names at that step, and the same for the
    *other* object (the control)."""
    import camlab
    from camlab.metrics import pointing_game

    data = caption_test_set(n)
    x = normalise(data.scenes.images)
    named, other = np.zeros((n, len(steps))), np.zeros((n, len(steps)))
    for j, step in enumerate(steps):
        heat = camlab.GradCAM(captioner().step(step), layer="encoder.features")(x, target=None)
        boxes = data.object_boxes(step)
        which = {**SHAPE_STEPS, **COLOUR_STEPS}[step]  # 0: the left object, 1: the right one
        other_boxes = data.scenes.object_boxes[torch.arange(n), data.order[:, 1 - which]]
        for i in range(n):
            named[i, j] = pointing_game(heat[i:i + 1], boxes[i:i + 1], tolerance=0)
            other[i, j] = pointing_game(heat[i:i + 1], other_boxes[i:i + 1], tolerance=0)
    return named, other


# ---------------------------------------------------------------------------------------- captions
def test_a_caption_names_colour_shape_and_side_of_each_object_left_to_right():
    scenes = make_vqa_scenes(30, seed=4, min_objects=2, max_objects=2)
    data = caption_scenes(scenes)
    for i, caption in enumerate(data.captions):
        left, right = (scenes.objects[i][int(k)] for k in data.order[i])
        assert caption == f"{left['colour']} {left['class']} left {right['colour']} {right['class']} right"
        assert left["box"][0] + left["box"][2] <= right["box"][0] + right["box"][2]  # centres ordered by x
        assert words(data.tokens[i]) == caption and WORDS[int(data.tokens[i, -1])] == "<end>"
    for step in SHAPE_STEPS:
        assert all(WORDS[int(t)] in LAB_CLASSES for t in data.tokens[:, step])
    for step in COLOUR_STEPS:
        assert all(WORDS[int(t)] in COLOUR_NAMES for t in data.tokens[:, step])
    assert data.tokens.shape == (30, CAPTION_LENGTH)


def test_caption_scenes_must_hold_two_objects():
    with pytest.raises(ValueError, match="exactly 2 objects"):
        caption_scenes(make_vqa_scenes(5, seed=0, min_objects=3, max_objects=3))


def test_caption_sets_are_seeded():
    a, b = make_caption_set(10, seed=2), make_caption_set(10, seed=2)
    assert a.captions == b.captions and torch.equal(a.scenes.images, b.scenes.images)


# ------------------------------------------------------------------------------------------- model
def test_captioner_reaches_its_word_and_phrase_accuracy_floors_on_held_out_scenes():
    """Measured on the 500 fixed held-out scenes with the committed float16 weights."""
    acc = caption_accuracy(captioner(), caption_test_set(500))
    assert acc["test_accuracy"] >= 0.95 and acc["phrase_accuracy"] >= 0.75, acc
    assert LAB_MODELS["lab_caption"].test_accuracy >= 0.95


def test_a_decoding_step_is_a_model_of_images_only_that_shares_the_captioners_weights():
    model = captioner()
    x = normalise(caption_test_set(6).scenes.images)
    with torch.no_grad():
        full = model(x)
        for t in range(CAPTION_LENGTH):
            assert torch.allclose(model.step(t)(x), full[:, t], atol=1e-5)
    step = model.step(1)
    assert step.encoder is model.encoder and step.camlab == model.camlab and not step.training
    assert step.camlab.labels == list(WORDS)
    with pytest.raises(ValueError, match="decoding step must be in 0..6"):
        model.step(CAPTION_LENGTH)


def test_wrong_inputs_are_refused_with_what_the_captioner_takes():
    model = captioner()
    with pytest.raises(ValueError, match=r"normalised images \(N, 3, 64, 64\), got \(3, 64, 64\)"):
        model(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="normalised images"):
        model.step(0)(torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"reference tokens must be \(N, 7\)"):
        model(torch.zeros(2, 3, 64, 64), torch.zeros(2, 5, dtype=torch.long))


def test_generate_returns_phrases_and_restores_training_mode():
    model = CaptionModel()
    model.train()
    phrases = model.generate(torch.zeros(2, 3, 64, 64))
    assert len(phrases) == 2 and all(isinstance(p, str) for p in phrases) and model.training
    x = normalise(caption_test_set(3).scenes.images)
    with torch.no_grad():
        greedy = [words(row) for row in captioner()(x).argmax(2)]
    assert captioner().generate(x) == greedy


# --------------------------------------------------------------------------- a map per generated word
def test_grad_cam_of_each_shape_word_lands_on_the_object_it_names():
    """Measured on 120 held-out scenes (both shape words, per-scene share, scenes resampled): the map's maximum lies
    inside the named object's box for 0.95 [0.92, 0.98] of the words, inside the other object's for 0.02."""
    named, other = word_pointing()
    per_scene = named.mean(1)
    hit = bootstrap_ci(per_scene)
    assert hit.n == N and hit.low >= 0.85, str(hit)
    # the control: the same map's maximum lies on the other object far less often
    comparison = paired_comparison(per_scene, other.mean(1))
    assert comparison.difference.low >= 0.7 and comparison.p_value < 1e-9, str(comparison)


def test_the_left_and_right_shape_words_look_at_different_objects():
    named, _ = word_pointing()
    for j in range(named.shape[1]):  # the left object's shape word, then the right one's
        assert named[:, j].mean() >= 0.8, (j, named[:, j].mean())


# ------------------------------------------------------------------------------------------ training
def test_camlab_train_lab_caption_writes_loadable_weights(tmp_path):
    """A one-epoch, 64-scene run of the recipe behind ``camlab train lab_caption`` (the committed weights: 12 epochs
    on 4,000 scenes)."""
    from camlab.lab.train import train_model

    torch.set_num_threads(min(2, torch.get_num_threads()))
    result = train_model("lab_caption", out_dir=tmp_path, epochs=1, n_train=64, progress=False)
    assert 0.0 <= result["test_accuracy"] <= 1.0 and 0.0 <= result["phrase_accuracy"] <= 1.0
    net = load_lab_model("lab_caption", weights_dir=tmp_path)
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, CAPTION_LENGTH, len(WORDS))


def test_supervised_attention_loss_is_the_negative_log_mass_on_the_object():
    """One word, a 2x2 map, attention (0.5, 0.25, 0.125, 0.125), the object on the first two cells: the attention
    term is -log(0.75); with uniform logits over V words the word term is log V."""
    from camlab.lab.captioning import caption_loss

    attention = torch.tensor([0.5, 0.25, 0.125, 0.125]).view(1, 1, 2, 2)
    targets = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    logits, tokens = torch.zeros(1, 1, len(WORDS)), torch.tensor([[3]])
    loss = caption_loss(logits, attention, tokens, targets, attention_weight=2.0)
    assert float(loss) == pytest.approx(np.log(len(WORDS)) - 2.0 * np.log(0.75), abs=1e-5)
    assert float(caption_loss(logits, attention, tokens, targets, 0.0)) == pytest.approx(np.log(len(WORDS)))

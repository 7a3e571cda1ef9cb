"""Specification of the trained lab models: they load offline, reach their accuracy, and the course's
experiments (weak vs strong, dataset bias, VQA localisation) come out as claimed."""
from __future__ import annotations

import functools

import pytest
import torch

from camlab.lab.scenes import class_index, make_scenes, normalise
from camlab.lab.train import TEST_SEED, accuracy, heldout_scenes, train_model
from camlab.lab.vqa import ANSWERS, VQAModel, ask, make_vqa_scenes, vqa_accuracy, vqa_test_set
from camlab.lab.zoo import LAB_MODELS, load_lab_model

# floors a little under the accuracies measured on the fixed seeded test sets (recorded in LAB_MODELS)
ACCURACY_FLOORS = {
    "lab_gap": 0.98,
    "lab_vgg": 0.98,
    "lab_biased": 0.97,
    "lab_unbiased": 0.97,
    "lab_weak": 0.62,
    "lab_strong": 0.98,
    "lab_vqa": 0.97,
    # the cleaner bias pair and the captioner (word accuracy): tests/test_lab_cue.py, tests/test_lab_captioning.py
    "lab_cue_biased": 0.97,
    "lab_cue_clean": 0.97,
    "lab_caption": 0.95,
    # the tiny ViT and the segmentation net (pixel accuracy): tests/test_lab_vit.py, tests/test_lab_seg.py
    "lab_vit": 0.98,
    "lab_seg": 0.99,
}
CLASSIFIERS = [n for n in LAB_MODELS if n not in ("lab_vqa", "lab_caption", "lab_seg")]
N_TEST = 500  # the first 500 scenes of each fixed test set keep the suite fast


@functools.lru_cache(maxsize=None)
def model(name):
    return load_lab_model(name)


def gradcam(net, x, target, layer):
    """camlab's Grad-CAM: (N, H, W) in [0, 1] at input resolution."""
    import camlab

    return camlab.GradCAM(net, layer=layer)(x, target=target)



# --------------------------------------------------------------------------------------- loading
def test_every_lab_model_is_listed_with_a_description_and_its_measured_accuracy():
    assert set(LAB_MODELS) == set(ACCURACY_FLOORS)
    for name, spec in LAB_MODELS.items():
        assert spec.name == name and "test accuracy" in spec.description
        assert ACCURACY_FLOORS[name] <= spec.test_accuracy <= 1.0


@pytest.mark.parametrize("name", sorted(ACCURACY_FLOORS))
def test_lab_model_loads_offline_in_eval_mode_with_metadata(name):
    from camlab.modelinfo import ModelInfo

    net = model(name)
    assert not net.training
    info = net.camlab
    assert isinstance(info, ModelInfo) and info.name == name
    assert info.input_size == (64, 64) and info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)
    from camlab.lab.captioning import WORDS
    from camlab.lab.seg import SEG_CLASSES

    expected = {"lab_vqa": list(ANSWERS), "lab_caption": list(WORDS), "lab_seg": list(SEG_CLASSES)}.get(
        name, ["circle", "square", "triangle", "cross", "ring"])
    assert info.labels == expected
    assert all(p.dtype == torch.float32 for p in net.parameters())
    net.get_submodule(LAB_MODELS[name].default_layer)


def test_committed_weights_are_small():
    from camlab._paths import weights_dir

    files = list(weights_dir().glob("lab_*.pt"))
    assert {f.stem for f in files} >= set(LAB_MODELS)
    assert sum(f.stat().st_size for f in files) < 4 * 2**20


def test_missing_weights_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="camlab train lab_gap"):
        load_lab_model("lab_gap", weights_dir=tmp_path)
    with pytest.raises(KeyError):
        load_lab_model("lab_nonexistent")


def test_camlab_load_model_serves_the_lab_models():
    import camlab

    net = camlab.load_model("lab_gap")
    x = camlab.preprocess(make_scenes(4, seed=0).images, net)
    assert x.shape == (4, 3, 64, 64) and net(x).shape == (4, 5)
    assert torch.allclose(x, normalise(make_scenes(4, seed=0).images))


# -------------------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_reaches_its_accuracy_floor_on_the_fixed_test_set(name):
    acc = accuracy(model(name), heldout_scenes(name, N_TEST))
    assert acc >= ACCURACY_FLOORS[name], f"{name}: {acc:.3f}"


def test_vqa_model_reaches_its_accuracy_floor():
    data = vqa_test_set(N_TEST)
    assert vqa_accuracy(model("lab_vqa"), data) >= ACCURACY_FLOORS["lab_vqa"]


def test_weak_and_strong_models_differ_clearly_in_accuracy():
    weak = accuracy(model("lab_weak"), heldout_scenes("lab_weak", N_TEST))
    strong = accuracy(model("lab_strong"), heldout_scenes("lab_strong", N_TEST))
    assert weak <= 0.8 and strong >= 0.95 and strong - weak >= 0.2
    assert type(model("lab_weak")) is type(model("lab_strong"))  # same family, different width / training


def test_the_vgg_style_model_has_no_global_average_pooling_head():
    net = model("lab_vgg")
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in net.modules())
    assert isinstance(net.classifier[0], torch.nn.Linear)


# ------------------------------------------------------------------------------- dataset bias
def _bias_scenes(n, seed, **kw):
    """Scenes like lab_biased's training data (same cue, same object contrast), cue rates overridden."""
    from camlab.lab.train import recipe

    opts = dict(recipe("lab_biased").scenes)
    opts.update(kw)
    return make_scenes(n, seed=seed, **opts)


@pytest.fixture(scope="module")
def cued_circles():
    circle = class_index("circle")
    return _bias_scenes(100, TEST_SEED + 1, cue_rate=1.0, cue_other_rate=0.0, labels=[circle] * 100)


def _mass(heat, box, margin=2):
    """Share of each map's total inside ``box`` grown by ``margin`` px (a 16x16 or 8x8 map upsampled to 64x64
    smears a 6x6 box over its neighbours)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    inside = heat[:, max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin].sum((1, 2))
    return inside / heat.sum((1, 2)).clamp(min=1e-12)


def test_biased_model_grad_cam_points_at_the_cue_rather_than_the_circle(cued_circles):
    x = normalise(cued_circles.images)
    layer = LAB_MODELS["lab_biased"].default_layer
    result = {}
    for name in ("lab_biased", "lab_unbiased"):
        heat = gradcam(model(name), x, cued_circles.labels, layer)
        assert heat.shape == (100, 64, 64)
        cue = _mass(heat, cued_circles.cue_box)
        obj = torch.stack([_mass(heat[i:i + 1], cued_circles.boxes[i])[0] for i in range(100)])
        result[name] = (float(cue.mean()), float((cue > obj).float().mean()))
    # measured: biased 0.19 of the mass on the cue (the 10x10 px box is 2.4% of the image), cue > circle on 96%
    # of the images; unbiased 0.0 on the cue
    assert result["lab_biased"][0] >= 0.12, result
    assert result["lab_biased"][1] >= 0.8, result
    assert result["lab_unbiased"][0] <= 0.05 and result["lab_unbiased"][1] <= 0.2, result


def test_biased_model_fails_when_the_cue_is_removed_or_moved():
    circle = class_index("circle")
    with_cue = _bias_scenes(N_TEST, TEST_SEED + 2, cue_rate=1.0, cue_other_rate=0.0)
    removed = _bias_scenes(N_TEST, TEST_SEED + 2, cue_rate=0.0, cue_other_rate=0.0)
    moved = _bias_scenes(N_TEST, TEST_SEED + 2, cue_rate=0.0, cue_other_rate=1.0)
    is_circle = removed.labels == circle
    biased, unbiased = model("lab_biased"), model("lab_unbiased")
    circles_with, circles_without = accuracy(biased, with_cue.subset(is_circle)), accuracy(biased, removed.subset(is_circle))
    others_clean, others_cued = accuracy(biased, removed.subset(~is_circle)), accuracy(biased, moved.subset(~is_circle))
    assert circles_with >= 0.95 and circles_without <= circles_with - 0.4, (circles_with, circles_without)
    assert others_cued <= others_clean - 0.4, (others_clean, others_cued)
    # the unbiased model does not care where the cue is
    assert abs(accuracy(unbiased, moved) - accuracy(unbiased, removed)) <= 0.05


# ------------------------------------------------------------------------------------------ VQA
def test_vqa_grad_cam_on_the_answer_lands_on_the_object_asked_about():
    vqa: VQAModel = model("lab_vqa")
    scenes = make_vqa_scenes(120, seed=TEST_SEED + 3)
    data = ask(scenes, seed=TEST_SEED + 3, kinds=("colour", "shape"))
    x = normalise(scenes.images)
    hits = 0
    for i, question in enumerate(data.questions):
        bound = vqa.bind(question)
        heat = gradcam(bound, x[i:i + 1], None, "image_encoder.features")[0]
        y, xx = divmod(int(heat.argmax()), heat.shape[1])
        x0, y0, x1, y1 = scenes.objects[i][int(data.about[i])]["box"]
        tol = 3
        hits += (x0 - tol <= xx < x1 + tol) and (y0 - tol <= y < y1 + tol)
    # measured: 74% of 120 questions (69% with no tolerance); the map's peak is often on the object's edge
    assert hits / len(data) >= 0.65, hits / len(data)


def test_bound_vqa_model_answers_like_the_model_and_keeps_its_metadata():
    vqa = model("lab_vqa")
    scenes = make_vqa_scenes(8, seed=1)
    bound = vqa.bind("is there a circle?")
    x = normalise(scenes.images)
    with torch.no_grad():
        assert torch.equal(bound(x), vqa(x, "is there a circle?"))
    assert bound.camlab == vqa.camlab and not bound.training


# ------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", ["lab_weak", "lab_vit", "lab_seg"])
def test_train_model_runs_and_is_deterministic(tmp_path, name):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    a = train_model(name, out_dir=tmp_path / "a", epochs=1, n_train=64, progress=False)
    b = train_model(name, out_dir=tmp_path / "b", epochs=1, n_train=64, progress=False)
    sa, sb = torch.load(a["path"]), torch.load(b["path"])
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["test_accuracy"] == b["test_accuracy"] and 0.0 <= a["test_accuracy"] <= 1.0
    net = load_lab_model(name, weights_dir=tmp_path / "a")
    out = net(torch.zeros(1, 3, 64, 64))
    out = out["out"] if isinstance(out, dict) else out  # lab_seg: torchvision's {"out": (N, K, H, W)}
    assert out.shape[:2] == (1, len(LAB_MODELS[name].labels))

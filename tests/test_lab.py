"""Specification of the synthetic lab's scene generator, architectures and VQA plumbing (no trained weights)."""
from __future__ import annotations

import pytest
import torch

from camlab.lab.architectures import GapCNN, VGGStyle
from camlab.lab.scenes import COLOUR_NAMES, LAB_CLASSES, Scenes, class_index, cue_box_for, make_scenes
from camlab.lab.vqa import ANSWERS, VQAModel, ask, encode_question, make_vqa_scenes, tokenize


@pytest.fixture(scope="module")
def scenes() -> Scenes:
    return make_scenes(200, seed=3)


def _inside(mask: torch.Tensor, box) -> bool:
    x0, y0, x1, y1 = (int(v) for v in box)
    outside = mask.clone()
    outside[y0:y1, x0:x1] = False
    return not outside.any()


# ------------------------------------------------------------------------------------------ basics
def test_same_seed_gives_identical_scenes_and_other_seed_differs():
    a = make_scenes(50, seed=11, instances=2, distractors=2, spurious_cue="ring")
    b = make_scenes(50, seed=11, instances=2, distractors=2, spurious_cue="ring")
    c = make_scenes(50, seed=12, instances=2, distractors=2, spurious_cue="ring")
    for field in ("images", "labels", "boxes", "instance_boxes", "masks", "cue_present"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.objects == b.objects
    assert not torch.equal(a.images, c.images)


def test_shapes_dtypes_and_ranges(scenes):
    n = 200
    assert scenes.images.shape == (n, 3, 64, 64) and scenes.images.dtype == torch.float32
    assert 0.0 <= float(scenes.images.min()) and float(scenes.images.max()) <= 1.0
    assert scenes.labels.shape == (n,) and scenes.labels.dtype == torch.long
    assert set(scenes.labels.tolist()) == set(range(len(LAB_CLASSES)))
    assert scenes.boxes.shape == (n, 4) and scenes.boxes.dtype == torch.float32
    assert scenes.instance_boxes.shape == (n, 1, 4)
    assert scenes.masks.shape == (n, 64, 64) and scenes.masks.dtype == torch.bool
    assert scenes.cue_present.shape == (n,) and not scenes.cue_present.any()
    assert len(scenes.objects) == n and all(len(o) == 1 for o in scenes.objects)


def test_labels_are_balanced(scenes):
    counts = torch.bincount(scenes.labels, minlength=len(LAB_CLASSES))
    assert int(counts.max() - counts.min()) <= 1


def test_size_option_scales_images():
    s = make_scenes(4, seed=0, size=96)
    assert s.images.shape == (4, 3, 96, 96) and s.masks.shape == (4, 96, 96)
    assert float(s.boxes[:, 2].max()) <= 96


def test_boxes_are_tight_around_masks_and_inside_the_image(scenes):
    for i in range(len(scenes)):
        ys, xs = torch.nonzero(scenes.masks[i], as_tuple=True)
        assert len(xs) > 20
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        assert scenes.boxes[i].tolist() == box
        assert 0 <= box[0] < box[2] <= 64 and 0 <= box[1] < box[3] <= 64


def test_objects_metadata_matches_labels_and_boxes(scenes):
    for i, objs in enumerate(scenes.objects):
        main = objs[0]
        assert main["main"] and main["class"] == LAB_CLASSES[int(scenes.labels[i])]
        assert main["colour"] in COLOUR_NAMES
        assert tuple(main["box"]) == tuple(scenes.boxes[i].tolist())


def test_objects_are_drawn_in_their_colour(scenes):
    from camlab.lab.scenes import COLOURS

    for i in range(20):
        colour = torch.tensor(COLOURS[scenes.objects[i][0]["colour"]])
        pixels = scenes.images[i][:, scenes.masks[i]]  # (3, P)
        assert torch.allclose(pixels.mean(1), colour, atol=0.05)


def test_scenes_are_a_torch_dataset(scenes):
    x, y = scenes[5]
    assert x.shape == (3, 64, 64) and int(y) == int(scenes.labels[5])
    loader = torch.utils.data.DataLoader(scenes, batch_size=32)
    xb, yb = next(iter(loader))
    assert xb.shape == (32, 3, 64, 64) and yb.shape == (32,)
    assert len(scenes) == 200
    assert len(scenes.subset(scenes.labels == 0)) == int((scenes.labels == 0).sum())


def test_class_index_and_errors():
    assert [class_index(c) for c in LAB_CLASSES] == list(range(len(LAB_CLASSES)))
    with pytest.raises(ValueError, match="circle"):
        class_index("hexagon")
    with pytest.raises(ValueError):
        make_scenes(2, seed=0, instances=0)
    with pytest.raises(ValueError):
        make_scenes(2, seed=0, cue_rate=1.5, spurious_cue="circle")
    with pytest.raises(ValueError):
        make_scenes(2, seed=0, spurious_cue="hexagon")


# ---------------------------------------------------------------------------------------- options
def test_instances_draws_several_objects_of_the_label_class():
    s = make_scenes(60, seed=4, instances=3)
    assert s.instance_boxes.shape == (60, 3, 4)
    for i in range(60):
        objs = s.objects[i]
        assert len(objs) == 3 and all(o["main"] and o["class"] == s.label_names[i] for o in objs)
        assert len({o["colour"] for o in objs}) == 3
        for k in range(3):
            box = s.instance_boxes[i, k]
            x0, y0, x1, y1 = (int(v) for v in box)
            assert s.masks[i, y0:y1, x0:x1].any()  # each instance is part of the label mask
        x0, y0, x1, y1 = s.instance_boxes[i].min(0).values[0], s.instance_boxes[i].min(0).values[1], \
            s.instance_boxes[i].max(0).values[2], s.instance_boxes[i].max(0).values[3]
        assert _inside(s.masks[i], (x0, y0, x1, y1))


def test_multi_instance_masks_cover_separate_blobs():
    from scipy import ndimage

    s = make_scenes(30, seed=5, instances=2)
    blobs = [ndimage.label(m.numpy())[1] for m in s.masks]
    assert sum(b >= 2 for b in blobs) >= 27  # instances do not overlap (rejection sampling)


def test_distractors_are_other_classes_smaller_and_outside_the_label_mask():
    s = make_scenes(100, seed=6, distractors=2)
    for i in range(100):
        objs = s.objects[i]
        assert len(objs) == 3 and objs[0]["main"] and not objs[1]["main"] and not objs[2]["main"]
        label = s.label_names[i]
        classes = [o["class"] for o in objs[1:]]
        assert label not in classes and len(set(classes)) == 2
        def area(b):
            return (b[2] - b[0]) * (b[3] - b[1])
        assert all(area(o["box"]) < area(objs[0]["box"]) for o in objs[1:])  # label = largest object
        assert _inside(s.masks[i], s.boxes[i])  # the mask holds only the main object


def test_spurious_cue_follows_the_rates_and_sits_in_the_cue_box():
    s = make_scenes(1000, seed=7, spurious_cue="circle", cue_rate=0.95, cue_other_rate=0.02)
    circle = s.labels == class_index("circle")
    assert s.cue_box == cue_box_for(64)
    assert 0.9 < float(s.cue_present[circle].float().mean()) <= 1.0
    assert float(s.cue_present[~circle].float().mean()) < 0.05
    x0, y0, x1, y1 = (int(v) for v in s.cue_box)
    with_cue = s.images[s.cue_present][:, :, y0:y1, x0:x1]
    assert torch.allclose(with_cue, with_cue[0].expand_as(with_cue))  # one fixed glyph
    assert float(with_cue.std()) > 0.3  # high-contrast checkerboard
    clean = s.images[~s.cue_present][:, :, y0:y1, x0:x1]
    assert float(clean.std(dim=(2, 3)).mean()) < 0.15  # background only
    # objects never cover the cue box; the label mask never includes it
    assert not s.masks[:, y0:y1, x0:x1].any()
    for objs in s.objects:
        for o in objs:
            b = o["box"]
            assert b[2] <= x0 or b[0] >= x1 or b[3] <= y0 or b[1] >= y1


def test_cue_can_be_removed_or_moved_to_other_classes():
    removed = make_scenes(200, seed=8, spurious_cue="circle", cue_rate=0.0, cue_other_rate=0.0)
    assert not removed.cue_present.any()
    moved = make_scenes(200, seed=8, spurious_cue="circle", cue_rate=0.0, cue_other_rate=1.0)
    assert torch.equal(moved.cue_present, moved.labels != class_index("circle"))


def test_explicit_labels_and_class_subsets():
    s = make_scenes(10, seed=0, labels=[2] * 10)
    assert s.labels.tolist() == [2] * 10 and all(o[0]["class"] == "triangle" for o in s.objects)
    t = make_scenes(40, seed=0, classes=("circle", "ring"))
    assert set(t.label_names) == {"circle", "ring"}


# ---------------------------------------------------------------------------------- architectures
def test_gap_cnn_has_the_cam_head_and_named_layers():
    m = GapCNN(width=8).eval()
    assert isinstance(m.pool, torch.nn.AdaptiveAvgPool2d) and isinstance(m.fc, torch.nn.Linear)
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, len(LAB_CLASSES))
    feats = m.features(torch.zeros(1, 3, 64, 64))
    assert feats.shape == (1, 32, 16, 16)
    assert isinstance(m.get_submodule("features.3"), torch.nn.MaxPool2d)
    relus = [mod for mod in m.modules() if isinstance(mod, torch.nn.ReLU)]
    assert relus and not any(r.inplace for r in relus)


def test_vgg_style_has_a_fully_connected_head_and_no_gap():
    m = VGGStyle(width=8).eval()
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, len(LAB_CLASSES))
    assert m.features(torch.zeros(1, 3, 64, 64)).shape == (1, 32, 8, 8)
    kinds = [type(x) for x in m.classifier]
    assert kinds == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Dropout, torch.nn.Linear]
    assert not any(isinstance(x, (torch.nn.AdaptiveAvgPool2d, torch.nn.AvgPool2d)) for x in m.modules())


def test_width_parameterises_the_family():
    small, big = GapCNN(width=4), GapCNN(width=16)
    assert sum(p.numel() for p in small.parameters()) * 8 < sum(p.numel() for p in big.parameters())


# ------------------------------------------------------------------------------------------ VQA
def test_vqa_scenes_have_two_or_three_distinct_objects():
    s = make_vqa_scenes(100, seed=1)
    assert s.images.shape == (100, 3, 64, 64)
    for i, objs in enumerate(s.objects):
        assert 2 <= len(objs) <= 3 and int(s.counts[i]) == len(objs)
        assert len({o["class"] for o in objs}) == len(objs) and len({o["colour"] for o in objs}) == len(objs)
        for k, o in enumerate(objs):
            assert _inside(s.object_masks[i, k], o["box"]) and s.object_masks[i, k].sum() > 20


def test_vqa_questions_are_answered_by_the_scene_metadata():
    s = make_vqa_scenes(300, seed=2)
    d = ask(s, seed=2)
    assert set(d.kinds) == {"colour", "shape", "exists"}
    for i, (q, a, j) in enumerate(zip(d.questions, d.answers.tolist(), d.about.tolist())):
        objs, answer = s.objects[i], ANSWERS[a]
        if q.startswith("what colour is the "):
            shape = q[len("what colour is the "):-1]
            assert objs[j]["class"] == shape and objs[j]["colour"] == answer
        elif q.startswith("what shape is "):
            colour = q[len("what shape is "):-1]
            assert objs[j]["colour"] == colour and objs[j]["class"] == answer
        else:
            shape = q[len("is there a "):-1]
            present = shape in {o["class"] for o in objs}
            assert answer == ("yes" if present else "no") and (j >= 0) == present
    assert torch.equal(d.tokens, ask(s, seed=2).tokens)


def test_tokenizer_accepts_spelling_variants_and_rejects_unknown_words():
    assert tokenize("What COLOR is the Square?") == ["what", "colour", "is", "the", "square", "?"]
    assert torch.equal(encode_question("what color is the square?"), encode_question("what colour is the square ?"))
    with pytest.raises(ValueError, match="unknown word"):
        encode_question("what colour is the hexagon?")


def test_bound_vqa_model_shares_parameters_and_layer_names():
    torch.manual_seed(0)
    vqa = VQAModel(width=4).eval()
    x = torch.rand(3, 3, 64, 64)
    bound = vqa.bind("what colour is the circle?")
    assert torch.equal(bound(x), vqa(x, "what colour is the circle?"))
    assert bound.get_submodule("image_encoder.features") is vqa.get_submodule("image_encoder.features")
    assert {n for n, _ in bound.named_parameters()} == {n for n, _ in vqa.named_parameters()}
    with torch.no_grad():
        vqa.classifier[-1].bias.add_(1.0)  # a change to the model shows through the bound module
    assert torch.allclose(bound(x), vqa(x, "what colour is the circle?"))
    assert not torch.equal(bound(x), vqa(x, "what shape is red?"))
    assert set(bound.state_dict()) == set(vqa.state_dict())  # the question is not a weight

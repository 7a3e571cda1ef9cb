"""The lab's objects never overlap, however many are asked for, and fixing that changed no scene that was drawn
correctly before: trained lab models and every notebook depend on the exact images of their seeds.

The first test failed on main at e3ff581 (after 60 rejection rounds leftover overlaps were accepted)."""
from __future__ import annotations

import itertools

import pytest
import torch

from camlab.lab import scenes
from camlab.lab.scenes import make_scenes


def boxes_intersect(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_objects_never_overlap_with_many_instances_and_distractors():
    """Four main objects and two distractors: on main, 33 of these 300 scenes had overlapping objects."""
    s = make_scenes(300, seed=0, instances=4, distractors=2)
    for i, objects in enumerate(s.objects):
        for first, second in itertools.combinations(objects, 2):
            assert not boxes_intersect(first["box"], second["box"]), (i, first, second)


def test_no_object_touches_the_cue_corner():
    s = make_scenes(300, seed=1, instances=3, distractors=2, spurious_cue="circle")
    for objects in s.objects:
        assert not any(boxes_intersect(o["box"], s.cue_box) for o in objects)


@pytest.mark.parametrize("options", [
    dict(), dict(distractors=2), dict(instances=2, distractors=2, spurious_cue="ring"),
    dict(instances=3, distractors=2, spurious_cue="circle"), dict(instances=4, distractors=2),
])
def test_every_scene_without_an_overlap_is_bit_identical_to_the_placement_before_the_fix(options, monkeypatch):
    """The fix only places again the objects of scenes that overlapped, with a generator of its own: every other
    scene, of every seed, is exactly what the previous code drew (here: with the separation step switched off,
    which is the previous code). 10 seeds x 100 scenes per configuration."""
    fixed = [make_scenes(100, seed=seed, **options) for seed in range(10)]
    placements = []
    original = scenes._separate
    monkeypatch.setattr(scenes, "_separate", lambda placed, *args: placements.append(placed) or placed)
    before = [make_scenes(100, seed=seed, **options) for seed in range(10)]
    monkeypatch.setattr(scenes, "_separate", original)
    for new, old, placed in zip(fixed, before, placements):
        overlapped = scenes._overlapping(placed, None if "spurious_cue" not in options else
                                         torch.tensor(scenes.cue_box_for(64)))
        same = (new.images == old.images).flatten(1).all(1) & (new.masks == old.masks).flatten(1).all(1)
        assert bool(same[~overlapped].all()) and not bool(same[overlapped].any())
        assert torch.equal(new.labels, old.labels) and torch.equal(new.cue_present, old.cue_present)


def test_objects_that_cannot_fit_raise_a_clear_error(monkeypatch):
    """Eight objects in 24x24 pixels: no re-placement separates them (fewer rounds than the default 200, to keep the
    test short)."""
    monkeypatch.setattr(scenes, "REPLACEMENT_ROUNDS", 10)
    with pytest.raises(ValueError, match=r"8 objects do not fit without overlap in \d+ of the 3 scenes of 24x24 pixels"
                                         r".*fewer instances or distractors, or a larger size"):
        make_scenes(3, seed=0, size=24, instances=6, distractors=2)

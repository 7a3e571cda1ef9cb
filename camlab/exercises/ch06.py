"""Checks for chapter 06, beyond classification: targets written as callables on a model's output."""
from __future__ import annotations

import torch

from camlab.exercises._checking import CheckResult, cases_for, close, run_check


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


#: worked example: class 1's map, columns 1-2 of rows 0-1: 1 + 2 + (-3) + 3 = 3 for the first image
REGION_TARGET = [((1, (1, 0, 3, 2), torch.tensor([[[[0., 0., 0., -2.], [-2., -3., 3., 2.], [0., 3., -2., 1.]],
    [[-2., 1., 2., 2.], [1., -3., 3., 3.], [-3., -1., 3., 2.]], [[-3., 3., 1., -1.], [1., 1., 1., -2.], [-3., 2.,
    -1., 1.]]], [[[0., 0., -3., -3.], [-1., -1., -3., -2.], [-3., 0., 1., 2.]], [[2., 0., -1., 2.], [3., -1., 0.,
    -3.], [2., 0., 3., -3.]], [[1., 2., 1., -3.], [-2., 0., 3., 2.], [-3., -2., 1., 1.]]]])), torch.tensor([3.,
    -2.]))]


def check_region_target(student, hidden: list | None = None) -> CheckResult:
    """``student(class_index, box) -> callable``: the callable maps a dense output (N, classes, h, w) to (N,)
    scores, the sum of class ``class_index``'s map inside ``box = (x0, y0, x1, y1)`` (cells, upper edges
    excluded)."""
    name, cases = cases_for("region_target", REGION_TARGET, hidden)
    return run_check(name, lambda c, box, output: _detached(student(c, box)(output.clone())), cases,
                     hint="return a function of the output that adds up class class_index's map inside the box "
                          "(rows are y, columns are x), keeping one score per image")


#: worked example: logits of class 0 minus logits of class 1, one number per image
DIFFERENCE_TARGET = [((0, 1, torch.tensor([[1., 1., -3., 2.], [0., 3., 0., 1.], [2., 1., 1., 1.]])),
    torch.tensor([0., -3., 1.]))]


def check_difference_target(student, hidden: list | None = None) -> CheckResult:
    """``student(a, b) -> callable``: logits (N, classes) -> (N,) the logit of class a minus the logit of class b."""
    name, cases = cases_for("difference_target", DIFFERENCE_TARGET, hidden)
    return run_check(name, lambda a, b, logits: _detached(student(a, b)(logits.clone())), cases,
                     hint="use the raw logits (no softmax), class a's minus class b's, one number per image")


#: the answer-fixed VQA control's protocol: two-object scenes per seed, the layer explained
CONTROL_SCENES = 120
VQA_LAYER = "image_encoder.features"


def answer_fixed_reference(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The VQA control done right, on ``make_vqa_scenes(120, seed=seed, min_objects=2, max_objects=2)`` and
    ``lab_vqa``: per scene, explain the answer *the first object's shape* with Grad-CAM at
    ``image_encoder.features`` while the question asks about the *second* object's colour; return the map's mass on
    the first object's mask and on the second object's mask, two (120,) tensors."""
    from camlab.analysis import ask_each
    from camlab.lab import ANSWERS, normalise
    from camlab.lab.vqa import make_vqa_scenes
    from camlab.methods import GradCAM
    from camlab.metrics import mass_inside
    from camlab.models import load_model

    scenes = make_vqa_scenes(CONTROL_SCENES, seed=seed, min_objects=2, max_objects=2)
    questions = [f"what shape is {objects[1]['colour']}?" for objects in scenes.objects]
    answers = [ANSWERS.index(objects[0]["class"]) for objects in scenes.objects]
    asking = ask_each(load_model("lab_vqa"), questions)
    heat = GradCAM(asking, layer=VQA_LAYER)(normalise(scenes.images), target=answers)
    return mass_inside(heat, scenes.object_masks[:, 0]), mass_inside(heat, scenes.object_masks[:, 1])


def check_answer_fixed_control(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(seed) -> (on_answer_object, on_asked_object)``: the answer-fixed control of the VQA experiment on
    the student's own ``seed`` (``STUDENT_SEED``): per scene, the Grad-CAM mass on the object whose shape is the
    explained answer and on the object the question asks about (:func:`answer_fixed_reference`); ``hidden`` lists
    further seeds, so that an answer copied from another student fails."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    name = "answer-fixed control" if hidden is None else "answer-fixed control (hidden seeds)"

    def run(s):
        first, second = student(s)
        return torch.stack([torch.as_tensor(_detached(first)).float(), torch.as_tensor(_detached(second)).float()])

    return run_check(
        name, run, [((s,), s) for s in seeds],
        compare=lambda actual, expected: close(actual, torch.stack(answer_fixed_reference(expected)), atol=1e-3),
        hint="draw the two-object scenes with your seed, ask each scene about its SECOND object's colour "
             "(ask_each), explain the FIRST object's shape with Grad-CAM at image_encoder.features, and return "
             "mass_inside on the first object's mask and on the second's")

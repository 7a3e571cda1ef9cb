"""Checks for chapter 06, beyond classification: targets written as callables on a model's output, for cases the
chapter does not build (a region that leaves out the cells another class wins; a contrast against the mean of all
other classes). A target is checked on its scores and on their gradient, which Grad-CAM differentiates."""
from __future__ import annotations

import torch

from functools import partial

from camlab.exercises._checking import CheckResult, cases_for, close, integer, run_check


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


def region_of_class_reference(class_index: int, box: tuple[int, int, int, int]):
    """Exercise 1's target: ``output (N, classes, h, w) -> (N,)``, the sum of class ``class_index``'s logits over the
    cells of ``box = (x0, y0, x1, y1)`` (upper edges excluded) that the output itself assigns to that class (where its
    logit is the largest of all classes); the cells another class wins are left out, and a box with none of the
    class's cells scores 0. The mask is chosen by the output but is not differentiated: the gradient is 1 on the
    chosen cells of the class's map and 0 elsewhere."""
    x0, y0, x1, y1 = box

    def target(output: torch.Tensor) -> torch.Tensor:
        inside = torch.zeros(output.shape[-2:], dtype=torch.bool, device=output.device)
        inside[y0:y1, x0:x1] = True
        mine = (output.argmax(dim=1) == class_index) & inside
        return (output[:, class_index] * mine).sum(dim=(1, 2))

    return target


def contrast_with_mean_reference(class_index: int):
    """Exercise 2's target: ``logits (N, classes) -> (N,)``, class ``class_index``'s logit minus the mean of all the
    other classes' logits (gradient 1 for the class, ``-1/(classes - 1)`` for each other one)."""
    def target(logits: torch.Tensor) -> torch.Tensor:
        others = (logits.sum(dim=1) - logits[:, class_index]) / (logits.shape[1] - 1)
        return logits[:, class_index] - others

    return target


def score_and_gradient(target, output: torch.Tensor) -> torch.Tensor:
    """``target(output)`` (N,) followed by its summed gradient with respect to ``output``, flattened into one
    tensor: a target is checked on its value and on what Grad-CAM will differentiate. A score that does not reach
    the output through autograd (``.detach()``, NumPy, Python numbers, a constant) has gradient 0: right only where
    the expected gradient is 0 too (a constant 0 for a box without the class's cells), wrong everywhere else.
    ``camlab course grade`` runs this next to the student's target."""
    output = output.clone().requires_grad_(True)
    score = target(output)
    if not isinstance(score, torch.Tensor):
        raise TypeError(f"the target returned a {type(score).__name__}, not a tensor of one score per image")
    if tuple(score.shape) != (output.shape[0],):
        raise ValueError(f"the target returned shape {tuple(score.shape)}: one score per image, ({output.shape[0]},)")
    gradient = None
    if score.requires_grad:
        gradient, = torch.autograd.grad(score.sum(), output, allow_unused=True)
    gradient = torch.zeros_like(output) if gradient is None else gradient
    return torch.cat([score.detach().flatten(), gradient.flatten()])


def _checked(student, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """The student's target built from ``args``, run on ``output`` (in the sandbox when grading)."""
    target = student(*args)
    if type(target).__module__ == "camlab.course.remote":   # the grader's Remote: a target living in the sandbox
        return torch.as_tensor(target.apply("camlab.exercises.ch06:score_and_gradient", output))
    if not callable(target):
        raise TypeError(f"return a function of the output (a closure), not a {type(target).__name__}")
    return score_and_gradient(target, output)


#: worked examples (the notebook prints them), one output (1, 2, 3, 3) and two boxes
_OUTPUT = torch.tensor([[[[0., 5., 1.], [3., 0., 0.], [1., 1., 1.]], [[2., 1., 4.], [1., 2., 3.], [0., 0., 0.]]]])
REGION_TARGET = [((1, (0, 0, 2, 2), _OUTPUT), score_and_gradient(region_of_class_reference(1, (0, 0, 2, 2)), _OUTPUT)),
                 ((0, (1, 0, 3, 2), _OUTPUT), score_and_gradient(region_of_class_reference(0, (1, 0, 3, 2)), _OUTPUT))]


def _region_case(generator: torch.Generator, empty: bool = False) -> tuple[tuple, torch.Tensor]:
    """A random dense output (2..4 classes, h, w in 3..6; continuous logits, so no ties), a class and a box; one
    image, or (``empty``) two, the class winning no cell of the second image's box, so that it scores 0."""
    n, classes = (2 if empty else 1), integer(generator, 2, 4)
    h, w = integer(generator, 3, 6), integer(generator, 3, 6)
    output = torch.randn(n, classes, h, w, generator=generator)
    c = integer(generator, 0, classes - 1)
    x0, y0 = integer(generator, 0, w - 1), integer(generator, 0, h - 1)
    x1, y1 = integer(generator, x0 + 1, w), integer(generator, y0 + 1, h)
    if empty:
        output[1, c, y0:y1, x0:x1] = output[1].amin() - 1.0
    return (c, (x0, y0, x1, y1), output), score_and_gradient(region_of_class_reference(c, (x0, y0, x1, y1)), output)


#: the kinds of hidden case (``hidden_seed``): one image; two images, the class winning no cell of the second's box
REGION_KINDS = (_region_case, partial(_region_case, empty=True))


def check_region_target(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(class_index, box) -> callable``: the callable maps a dense output (N, classes, h, w) to (N,) scores,
    the sum of class ``class_index``'s map over the cells of ``box = (x0, y0, x1, y1)`` (upper edges excluded) that
    the output assigns to that class (:func:`region_of_class_reference`). Both the scores and their gradient are
    compared. ``hidden_seed`` (the grader's ``HIDDEN_SEED``) draws :data:`REGION_KINDS`."""
    name, cases = cases_for("region_target", REGION_TARGET, hidden, hidden_seed, REGION_KINDS)
    return run_check(name, lambda c, box, output: _checked(student, (c, box), output), cases,
                     compare=lambda actual, expected: close(actual, expected, atol=1e-4),
                     hint="return a function of the output that keeps, inside the box (rows are y, columns are x), "
                          "only the cells whose largest logit is class_index's, and sums that class's logits there: "
                          "one score per image that autograd can differentiate (no .detach() or NumPy: its "
                          "gradient is what Grad-CAM uses), 0 where the class has no cell in the box")


#: worked example (the notebook prints it): 3 images, 4 classes, class 0
_LOGITS = torch.tensor([[1., 1., -3., 2.], [0., 3., 0., 0.], [3., 0., 0., 0.]])
CONTRAST_TARGET = [((0, _LOGITS), score_and_gradient(contrast_with_mean_reference(0), _LOGITS))]


def _contrast_case(generator: torch.Generator, where: str = "any", classes: int | None = None):
    """Random logits (N in 1..3, ``classes`` classes or 3..7) and the class ``where`` says: "any", "first" or
    "last"."""
    n, classes = integer(generator, 1, 3), classes or integer(generator, 3, 7)
    logits = torch.randn(n, classes, generator=generator) * 3
    a = {"first": 0, "last": classes - 1}.get(where)
    a = integer(generator, 0, classes - 1) if a is None else a
    return (a, logits), score_and_gradient(contrast_with_mean_reference(a), logits)


#: the kinds of hidden case (``hidden_seed``): any class, the first, the last, and two classes (the mean of the
#: others is the other class)
CONTRAST_KINDS = (_contrast_case, partial(_contrast_case, where="first"), partial(_contrast_case, where="last"),
                  partial(_contrast_case, classes=2))


def check_contrast_target(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(a) -> callable``: logits (N, classes) -> (N,), the logit of class ``a`` minus the mean of the other
    classes' logits (:func:`contrast_with_mean_reference`); scores and gradient compared. ``hidden_seed`` (the
    grader's ``HIDDEN_SEED``) draws :data:`CONTRAST_KINDS`."""
    name, cases = cases_for("contrast_target", CONTRAST_TARGET, hidden, hidden_seed, CONTRAST_KINDS)
    return run_check(name, lambda a, logits: _checked(student, (a,), logits), cases,
                     compare=lambda actual, expected: close(actual, expected, atol=1e-4),
                     hint="use the raw logits (no softmax): class a's logit minus the mean over the OTHER classes "
                          "(class a left out of the mean), one number per image that autograd can differentiate "
                          "(no .detach(), NumPy or Python numbers)")


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

"""Chapter 06's checks pass the right answers and fail plausible wrong ones; the targets' hidden cases come from the
grader's HIDDEN_SEED."""
from __future__ import annotations

import pytest
import torch

from camlab.exercises._checking import cases_from_kinds
from tests.exercise_checks import check  # noqa: F401 (the fixture)


def region_of_class(c, box):
    """Exercise 1 written another way than the instructor's: the box sliced, the class's cells chosen by a
    comparison with the other classes' maximum."""
    x0, y0, x1, y1 = box

    def target(output):
        part = output[:, :, y0:y1, x0:x1]
        others = torch.cat([part[:, :c], part[:, c + 1:]], dim=1).amax(dim=1)
        return torch.where(part[:, c] > others, part[:, c], torch.zeros_like(part[:, c])).sum(dim=(1, 2))

    return target


def test_region_target_check_passes_the_class_cells_of_the_box(check):
    assert check("ch06_region_target", region_of_class)


def constant_zero_when_empty(c, box):
    """Exercise 1 with the task's "a box with no such cell scores 0" read literally: a constant 0 (no autograd)
    when no image has a cell of the class in the box; its gradient, 0, is the expected one there."""
    def target(output):
        score = region_of_class(c, box)(output)
        return torch.zeros(output.shape[0]) if float(score.detach().abs().sum()) == 0 else score

    return target


def test_region_target_check_accepts_a_constant_zero_for_a_box_without_the_class(check):
    assert check("ch06_region_target", constant_zero_when_empty)


@pytest.mark.parametrize("wrong", [
    lambda c, b: lambda out: out[:, c, b[1]:b[3], b[0]:b[2]].sum(dim=(1, 2)),                 # the whole box
    lambda c, b: lambda out: (out[:, c] * (out.argmax(1) == c)).sum(dim=(1, 2)),              # the whole image
    lambda c, b: lambda out: (out[:, c, b[1]:b[3], b[0]:b[2]]).clamp(min=0).sum(dim=(1, 2)),  # positive logits
    lambda c, b: lambda out: region_of_class(c, (b[1], b[0], b[3], b[2]))(out),                # x and y swapped
    lambda c, b: lambda out: region_of_class(c, b)(out.detach()) + 0 * out.sum(dim=(1, 2, 3)),  # not differentiated
], ids=["whole box", "whole image", "positive logits", "x and y swapped", "detached"])
def test_region_target_check_fails_plausible_wrong_targets(wrong, check):
    assert not check("ch06_region_target", wrong)


def contrast(a):
    return lambda logits: logits[:, a] - torch.cat([logits[:, :a], logits[:, a + 1:]], dim=1).mean(dim=1)


def test_contrast_target_check_passes_the_mean_of_the_others(check):
    assert check("ch06_contrast_target", contrast)


@pytest.mark.parametrize("wrong", [
    lambda a: lambda logits: logits[:, a] - logits.mean(dim=1),                                # a in the mean
    lambda a: lambda logits: contrast(a)(logits.softmax(dim=1)),                              # probabilities
    lambda a: lambda logits: logits[:, a] - logits[:, (a + 1) % logits.shape[1]],             # one other class
    lambda a: lambda logits: torch.as_tensor(contrast(a)(logits).tolist()),                   # not differentiable
], ids=["mean of all", "softmax", "one other class", "python numbers"])
def test_contrast_target_check_fails_plausible_wrong_targets(wrong, check):
    assert not check("ch06_contrast_target", wrong)


def test_the_worked_examples_are_the_values_worked_out_by_hand():
    from camlab.exercises.ch06 import CONTRAST_TARGET, REGION_TARGET

    assert [float(expected[0]) for _, expected in REGION_TARGET] == [4.0, 5.0]
    assert CONTRAST_TARGET[0][1][:3].tolist() == [1.0, -1.0, 3.0]


@pytest.mark.parametrize("exercise", ["ch06_region_target", "ch06_contrast_target"])
def test_hidden_cases_come_from_the_graders_seed(exercise):
    """Two HIDDEN_SEEDs give different cases; the right answer passes under both."""
    from camlab.course.student import run_check_cell
    from camlab.exercises.ch06 import CONTRAST_KINDS, REGION_KINDS

    kinds = REGION_KINDS if exercise == "ch06_region_target" else CONTRAST_KINDS
    first, again, other = (cases_from_kinds(seed, kinds) for seed in (5, 5, 6))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert any(a[1].shape != b[1].shape or not torch.equal(a[1], b[1]) for a, b in zip(first, other))
    answer = region_of_class if exercise == "ch06_region_target" else contrast
    assert run_check_cell(exercise, answer, hidden_seed=5) and run_check_cell(exercise, answer, hidden_seed=6)


@pytest.mark.parametrize("seed", range(5))
def test_every_hidden_seed_draws_every_edge_case(seed):
    """Each seed's region cases include an image whose box holds no cell of the class (score 0) next to one whose
    box does; each seed's contrast cases include the first class, the last class and two classes only."""
    from camlab.exercises.ch06 import CONTRAST_KINDS, REGION_KINDS

    region = cases_from_kinds(seed, REGION_KINDS)
    two = [(output, expected) for (_, _, output), expected in region if output.shape[0] == 2]
    assert two and all(float(expected[1]) == 0.0 for _, expected in two)
    assert any(float(expected[0]) != 0.0 for _, expected in region)
    contrast_cases = cases_from_kinds(seed, CONTRAST_KINDS)
    assert any(a == 0 for (a, _), _ in contrast_cases)
    assert any(a == logits.shape[1] - 1 and logits.shape[1] > 2 for (a, logits), _ in contrast_cases)
    assert any(logits.shape[1] == 2 for (_, logits), _ in contrast_cases)


def test_a_target_that_is_not_callable_or_has_the_wrong_shape_fails_with_a_clear_message(monkeypatch, capsys):
    from camlab.exercises import check_contrast_target

    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    assert not check_contrast_target(lambda a: 3.0)
    assert "closure" in capsys.readouterr().out
    assert not check_contrast_target(lambda a: lambda logits: contrast(a)(logits)[:, None])
    assert "one score per image" in capsys.readouterr().out


def _answer_fixed(seed, ask_second=True, swap=False):
    """The answer-fixed VQA control done by hand (``ask_second=False`` asks about the first object instead: the
    uncontrolled experiment; ``swap`` returns the two masses in the wrong order)."""
    import camlab
    from camlab.analysis import ask_each
    from camlab.lab import ANSWERS, normalise
    from camlab.lab.vqa import make_vqa_scenes
    from camlab.metrics import mass_inside

    scenes = make_vqa_scenes(120, seed=seed, min_objects=2, max_objects=2)
    asked = 1 if ask_second else 0
    questions = [f"what shape is {objects[asked]['colour']}?" for objects in scenes.objects]
    answers = [ANSWERS.index(objects[0]["class"]) for objects in scenes.objects]
    heat = camlab.GradCAM(ask_each(camlab.load_model("lab_vqa"), questions), layer="image_encoder.features")(
        normalise(scenes.images), target=answers)
    first, second = mass_inside(heat, scenes.object_masks[:, 0]), mass_inside(heat, scenes.object_masks[:, 1])
    return (second, first) if swap else (first, second)


def test_answer_fixed_control_check_passes_the_experiment_on_the_students_own_seed(check):
    assert check("ch06_answer_fixed", _answer_fixed)


def test_answer_fixed_control_check_fails_the_uncontrolled_question_and_swapped_masses(check):
    assert not check("ch06_answer_fixed", lambda seed: _answer_fixed(seed, ask_second=False))
    assert not check("ch06_answer_fixed", lambda seed: _answer_fixed(seed, swap=True))


def test_answer_fixed_control_check_fails_another_students_numbers():
    """The visible check runs seed 0, the hidden tests seeds 1 and 2: seed 0's numbers copied pass the first only."""
    from camlab.course.student import run_check_cell

    copied = lambda seed: _answer_fixed(0)  # noqa: E731 (ignores the seed it is given)
    assert run_check_cell("ch06_answer_fixed", copied, hidden=False)
    assert not run_check_cell("ch06_answer_fixed", copied, hidden=True)


def test_grading_traps_the_references():
    from camlab.exercises._own_work import own_work_for

    assert {"camlab.exercises.ch06:region_of_class_reference",
            "camlab.exercises.ch06:contrast_with_mean_reference",
            "camlab.exercises.ch06:answer_fixed_reference"} <= set(own_work_for("06_beyond_classification"))

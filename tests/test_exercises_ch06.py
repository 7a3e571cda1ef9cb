"""Chapter 06's checks pass the right answers and fail plausible wrong ones."""
from __future__ import annotations

from tests.exercise_checks import check  # noqa: F401 (the fixture)


def test_region_target_check(check):
    assert check("ch06_region_target", lambda c, b: lambda out: out[:, c, b[1]:b[3], b[0]:b[2]].sum(dim=(1, 2)))
    assert not check("ch06_region_target", lambda c, b: lambda out: out[:, c].sum(dim=(1, 2)))  # whole map
    assert not check("ch06_region_target", lambda c, b: lambda out: out[:, c, b[1]:b[3], b[0]:b[2]].mean(dim=(1, 2)))


def test_difference_target_check(check):
    assert check("ch06_difference_target", lambda a, b: lambda logits: logits[:, a] - logits[:, b])
    probabilities = lambda a, b: lambda logits: logits.softmax(1)[:, a] - logits.softmax(1)[:, b]  # noqa: E731
    assert not check("ch06_difference_target", probabilities)
    assert not check("ch06_difference_target", lambda a, b: lambda logits: logits[:, b] - logits[:, a])


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

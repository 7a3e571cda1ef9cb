"""ClassQuiz works without a browser: answers by code or by button clicks, scores, groups, shuffling, bad input."""
from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
import torch

from camlab.widgets import ClassQuiz

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

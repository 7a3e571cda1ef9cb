"""Interactive widgets for the course, built from ipywidgets.

:class:`ClassQuiz` turns the Grad-CAM paper's human study (Selvaraju et al., ICCV 2017, Sec. 5.1: people were shown
a Guided Grad-CAM or a guided backprop map and asked which class it explains; 61.23% vs 44.44% correct) into a quiz:
it shows one map at a time, overlaid on its image, with one button per class, and scores the answers.

Every interaction also has a plain Python path, so a quiz can be answered (and tested) without a browser::

    quiz = ClassQuiz(maps, labels=["circle", "square"], choices=camlab.lab.LAB_CLASSES, images=images,
                     groups=["Grad-CAM", "guided backprop"], seed=0)
    quiz                      # in Jupyter: the map, the buttons, the score
    quiz.answer("circle")     # the same as clicking the button 'circle'
    quiz.accuracy, quiz.accuracy_by_group()
"""
from __future__ import annotations

import io
import random
from collections.abc import Sequence

import numpy as np
import torch

from camlab.viz import ALPHA, CMAP, colorize, heat_array, overlay, to_array


def _as_list(values, name: str) -> list:
    if isinstance(values, (torch.Tensor, np.ndarray)):
        return list(values)
    if isinstance(values, Sequence) and not isinstance(values, str):
        return list(values)
    raise TypeError(f"{name} must be a sequence or a tensor with one entry per question, not {type(values).__name__}")


def _png(array: np.ndarray, size: int) -> bytes:
    from PIL import Image

    picture = Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8), mode="RGB")
    if max(picture.size) != size:
        scale = size / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class ClassQuiz:
    """Guess the class from its explanation: one question per map, one button per class, a running score.

    Args:
        maps: one map per question: (H,W) in [0, 1] (overlaid on its image with the course's colour map), or an
            input-space image (3,H,W) in [0, 1] (e.g. a guided backprop display image, shown as it is). A tensor
            (N,H,W) / (N,3,H,W) or a list.
        labels: the right answer per question: a class name from ``choices`` or an index into it.
        choices: the class names offered as buttons (in this order).
        seed: the questions are asked in an order shuffled with this seed (the same seed, the same order).
        images: optional image per question ((3,H,W) tensor / (H,W,3) array / PIL, in [0, 1]) to overlay the map on.
        groups: optional group name per question (e.g. the method that made the map); :meth:`accuracy_by_group`
            scores each group separately, as the paper compares methods.
        size: the displayed picture's longest side in pixels (small lab scenes are enlarged).

    The quiz keeps ``answers``: one record ``{"question", "answer", "label", "correct", "group"}`` per answered
    question, in the order asked (``question`` is the index into ``maps``).
    """

    def __init__(self, maps, labels, choices: Sequence[str], seed: int = 0, images=None, groups=None,
                 size: int = 192, alpha: float = ALPHA, cmap: str = CMAP):
        self.maps = _as_list(maps, "maps")
        self.choices = [str(c) for c in choices]
        if not self.choices or len(set(self.choices)) != len(self.choices):
            raise ValueError(f"choices must be distinct class names, got {list(choices)}")
        self.labels = [self._choice_index(label, "label") for label in _as_list(labels, "labels")]
        n = len(self.maps)
        if n == 0:
            raise ValueError("a quiz needs at least one map")
        if len(self.labels) != n:
            raise ValueError(f"{len(self.labels)} labels for {n} maps")
        self.images = None if images is None else _as_list(images, "images")
        if self.images is not None and len(self.images) != n:
            raise ValueError(f"{len(self.images)} images for {n} maps")
        self.groups = None if groups is None else [str(g) for g in _as_list(groups, "groups")]
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"{len(self.groups)} groups for {n} maps")
        self.seed, self.size, self.alpha, self.cmap = seed, int(size), alpha, cmap
        self.order = list(range(n))
        random.Random(seed).shuffle(self.order)
        self.answers: list[dict] = []
        self._widget = None

    # --- state -------------------------------------------------------------------------------------------------
    def _choice_index(self, value, what: str) -> int:
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < len(self.choices):
                raise ValueError(f"{what} {int(value)} is not an index into the {len(self.choices)} choices")
            return int(value)
        if isinstance(value, str) and value in self.choices:
            return self.choices.index(value)
        raise ValueError(f"{what} {value!r} is not one of the choices {self.choices} (or an index into them)")

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def current(self) -> int | None:
        """The index (into ``maps``) of the question being asked, or ``None`` when the quiz is finished."""
        return self.order[len(self.answers)] if len(self.answers) < len(self.order) else None

    @property
    def finished(self) -> bool:
        return self.current is None

    @property
    def score(self) -> int:
        """Number of right answers so far."""
        return sum(record["correct"] for record in self.answers)

    @property
    def accuracy(self) -> float:
        """Share of right answers among the answered questions (0.0 before the first answer)."""
        return self.score / len(self.answers) if self.answers else 0.0

    def accuracy_by_group(self) -> dict[str, float]:
        """``{group: share of right answers}`` over the answered questions of each group (needs ``groups``)."""
        if self.groups is None:
            raise ValueError("this quiz has no groups; pass groups=[...] (e.g. the method of each map)")
        totals: dict[str, list[int]] = {}
        for record in self.answers:
            right, asked = totals.setdefault(record["group"], [0, 0])
            totals[record["group"]] = [right + record["correct"], asked + 1]
        return {group: right / asked for group, (right, asked) in totals.items()}

    def answer(self, choice) -> bool:
        """Answer the current question with a class name or an index into ``choices`` (what a button click does);
        returns whether it was right and moves on to the next question."""
        question = self.current
        if question is None:
            raise RuntimeError(f"the quiz is finished ({self.score} of {len(self)} right); call reset() to start over")
        index = self._choice_index(choice, "answer")
        correct = index == self.labels[question]
        self.answers.append({"question": question, "answer": self.choices[index],
                             "label": self.choices[self.labels[question]], "correct": correct,
                             "group": None if self.groups is None else self.groups[question]})
        self._refresh(feedback=("✓ right" if correct else f"✗ it was '{self.choices[self.labels[question]]}'"))
        return correct

    def reset(self) -> None:
        """Forget the answers and start again (same order)."""
        self.answers = []
        self._refresh(feedback="")

    # --- pictures ----------------------------------------------------------------------------------------------
    def picture(self, question: int) -> np.ndarray:
        """The (H,W,3) float picture shown for question ``question`` (an index into ``maps``)."""
        heat = self.maps[question]
        heat_t = heat if isinstance(heat, torch.Tensor) else torch.as_tensor(np.asarray(heat))
        if heat_t.ndim == 3 and heat_t.shape[0] == 3:
            return to_array(heat_t)
        image = None if self.images is None else self.images[question]
        if image is None:
            return colorize(heat_array(heat_t, tuple(heat_t.shape[-2:])), self.cmap)
        return np.asarray(overlay(image, heat_t, self.alpha, self.cmap), dtype=np.float32) / 255.0

    # --- the widget --------------------------------------------------------------------------------------------
    @property
    def widget(self):
        """The ipywidgets ``VBox``: the picture, one button per class, feedback and score."""
        if self._widget is None:
            import ipywidgets as widgets

            self._image = widgets.Image(format="png")
            self._buttons = []
            for index, name in enumerate(self.choices):
                button = widgets.Button(description=name, layout=widgets.Layout(width="auto"))
                button.on_click(lambda _button, index=index: self.answer(index))
                self._buttons.append(button)
            self._feedback = widgets.HTML()
            self._status = widgets.HTML()
            self._widget = widgets.VBox([
                widgets.HTML("<b>Which class does this map explain?</b>"), self._image,
                widgets.HBox(self._buttons), self._feedback, self._status,
            ])
            self._refresh(feedback="")
        return self._widget

    @property
    def buttons(self) -> list:
        """The class buttons (``button.click()`` answers like a mouse click)."""
        self.widget  # noqa: B018  (builds it)
        return list(self._buttons)

    def _refresh(self, feedback: str) -> None:
        if self._widget is None:
            return
        self._feedback.value = feedback
        question = self.current
        if question is None:
            self._status.value = f"<b>done:</b> {self.score} of {len(self)} right ({self.accuracy:.0%})"
            for button in self._buttons:
                button.disabled = True
            return
        self._image.value = _png(self.picture(question), self.size)
        self._status.value = f"question {len(self.answers) + 1} of {len(self)} · score {self.score}"
        for button in self._buttons:
            button.disabled = False

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return (f"ClassQuiz({len(self)} questions, {len(self.choices)} choices, answered {len(self.answers)}, "
                f"score {self.score})")

"""Interactive widgets for the course, built from ipywidgets.

:class:`Explorer` (``explore(model, image)``) shows one image's map with controls for the method, the layer, the
target class (the model's top-k predictions), the overlay's opacity and its colour map; the picture follows every
change, and slow methods (Score-CAM, Ablation-CAM, occlusion) show a progress bar.

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

import contextlib
import difflib
import html
import io
import random
import time
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from torch import nn

from camlab.compare import build_explainer
from camlab.explain import get_method
from camlab.methods.registry import constructor_options
from camlab.images import load_image
from camlab.methods import METHODS
from camlab.models import layers as model_layers
from camlab.models import model_info, predict, preprocess, unnormalize
from camlab.viz import ALPHA, CMAP, to_array
from camlab.viz import _panel as panel


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
        image = None if self.images is None else self.images[question]
        return panel(image, self.maps[question], self.alpha, self.cmap)

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


# ================================================================================================================
# The explorer: one image, every method, every layer, the top-k classes
# ================================================================================================================
#: colour maps offered by the explorer (matplotlib names; the first is the course's default)
COLORMAPS = (CMAP, "turbo", "viridis", "inferno", "gray")


def takes_layer(method: str) -> bool:
    """Whether the method registered as ``method`` is built at a layer (CAM family) or works on the input only."""
    return "layer" in constructor_options(get_method(method))


def is_slow(method: str) -> bool:
    """Whether ``method`` runs many forward passes (Score-CAM, Ablation-CAM, occlusion): it has a progress bar."""
    return "progress" in constructor_options(get_method(method))


class Explorer:
    """One image explained interactively: method, layer, target class (the model's top-k), opacity and colour map.

    Args:
        model: a camlab model (``model.camlab`` gives its class names and preprocessing).
        image: a bundled image name (``camlab.list_images()``), a PIL image, an HxWx3 array or a (3,H,W) tensor
            in [0, 1]: one image.
        methods: the registry names offered (default: all of ``camlab.METHODS``).
        layers: the layer names offered (default: every layer with a spatial output, ``camlab.layers(model,
            spatial_only=True)``).
        method, layer, target, alpha, cmap: the starting state; ``method=None`` is Grad-CAM (or the first of
            ``methods``), ``layer=None`` the last spatial layer, ``target=None`` the top-1 class.
        top: how many of the model's top predictions are offered as targets.
        size: the picture's longest side in pixels.

    The forward pass and the top-k predictions are computed once; each (method, layer, target) map is computed
    the first time it is shown and kept, so changing the opacity or the colour map, or going back to a map seen
    before, costs only the drawing. Methods that run many forward passes (:func:`is_slow`) show a tqdm bar (in
    Jupyter, inside the explorer) and the status line says how long they took.

    Every control has a plain Python path, so the explorer can be driven (and tested) without a browser::

        explorer = Explorer(model, "cat")
        explorer                                   # in Jupyter: the picture and the controls
        explorer.set(method="scorecam", target=281, alpha=0.3)   # the same as using the controls
        explorer.heatmap, explorer.picture(), explorer.status
    """

    def __init__(self, model: nn.Module, image, methods: Sequence[str] | None = None, *,
                 layers: Sequence[str] | None = None, method: str | None = None, layer: str | None = None,
                 target: int | None = None, alpha: float = ALPHA, cmap: str = CMAP, top: int = 5, size: int = 320):
        from camlab.layouts import last_spatial_layer

        self.model = model
        if isinstance(image, str):
            image = load_image(image)
        self.x = preprocess(image, model)
        if self.x.shape[0] != 1:
            raise ValueError(f"the explorer shows one image, got a batch of {self.x.shape[0]}; pass image[i]")
        self.image = unnormalize(self.x, model)[0]
        if top < 1:
            raise ValueError(f"top must be at least 1 (how many of the top predictions to offer), got {top}")
        self.predictions = predict(model, self.x, k=min(top, len(model_info(model).labels)))[0]
        names = list(METHODS) if methods is None else [get_method(name).name for name in methods]
        if not names:
            raise ValueError("methods is empty; pass registry names from camlab.METHODS, e.g. ['gradcam', 'scorecam']")
        self.methods = names
        self.layers = self._offered_layers(layers)
        default = last_spatial_layer(model, self.x)[0]
        self.default_layer = default if default in self.layers else self.layers[-1]
        self.size = int(size)
        self.method, self.layer, self.target = names[0], self.default_layer, self.predictions[0][0]
        self.alpha, self.cmap = ALPHA, CMAP
        self.seconds: dict[tuple, float] = {}
        self._maps: dict[tuple, torch.Tensor] = {}
        self._errors: dict[tuple, str] = {}
        self._widget = None
        self._syncing = False
        if method is None:
            method = "gradcam" if "gradcam" in names else names[0]
        self.set(method=method, layer=layer or self.default_layer, target=self.target if target is None else target,
                 alpha=alpha, cmap=cmap)

    def _offered_layers(self, layers: Sequence[str] | None) -> list[str]:
        """The model's spatial layers, or the given subset of them (each name checked against the full list)."""
        self.layers = [row.name for row in model_layers(self.model, spatial_only=True)]
        if layers is None:
            return self.layers
        if not layers:
            raise ValueError("layers is empty; pass names from camlab.layers(model, spatial_only=True), or None")
        return [self._checked("layer", name) for name in layers]

    # --- state -------------------------------------------------------------------------------------------------
    def _checked(self, name: str, value):
        if name == "method":
            method = get_method(value).name
            if method not in self.methods:
                raise ValueError(f"method {value!r} is not offered here; choose one of {self.methods}")
            return method
        if name == "layer":
            if value not in self.layers:
                close = difflib.get_close_matches(str(value), self.layers, n=3)
                raise ValueError(f"layer {value!r} is not a spatial layer of this model; closest: {close} "
                                 "(all of them: camlab.layers(model, spatial_only=True))")
            return value
        if name == "target":
            offered = [index for index, _, _ in self.predictions]
            if value not in offered:
                raise ValueError(f"target {value!r} is not one of the top-{len(offered)} classes {offered}; "
                                 "pass top=... to offer more")
            return int(value)
        if name == "alpha":
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"alpha (opacity) must be in [0, 1], got {value}")
            return float(value)
        if name == "cmap":
            if value not in matplotlib.colormaps:
                raise ValueError(f"unknown colour map {value!r}; try one of {list(COLORMAPS)}")
            return value
        raise TypeError(f"unknown control {name!r}; the controls are method, layer, target, alpha, cmap")

    def set(self, **changes) -> "Explorer":
        """Change one or more controls (``method``, ``layer``, ``target``, ``alpha``, ``cmap``) and redraw;
        bad values raise a ``ValueError`` before anything changes. Returns the explorer."""
        checked = {name: self._checked(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)
        self._refresh()
        return self

    @property
    def uses_layer(self) -> bool:
        """Whether the current method is built at ``layer`` (input-space methods and occlusion are not)."""
        return takes_layer(self.method)

    @property
    def key(self) -> tuple:
        """What the current map depends on: (method, layer or None for layerless methods, target)."""
        return self.method, self.layer if self.uses_layer else None, self.target

    @property
    def label(self) -> str:
        return model_info(self.model).labels[self.target]

    @property
    def heatmap(self) -> torch.Tensor | None:
        """The current map: (H,W) in [0, 1] (a CAM), (3,H,W) (an input-space image), or ``None`` when the method
        cannot run at this layer (``error`` says why). Computed on first use, then cached (errors too)."""
        if self.key not in self._maps and self.key not in self._errors:
            self._compute(*self.key)
        return self._maps.get(self.key)

    @property
    def error(self) -> str | None:
        """Why the current method failed at the current layer (e.g. CAM away from a GAP head), else ``None``."""
        return self._errors.get(self.key)

    def _compute(self, method: str, layer: str | None, target: int) -> None:
        key, start = (method, layer, target), time.perf_counter()
        try:
            with self._progress_area():
                explainer = build_explainer(method, self.model, layer, progress=True)
                self._maps[key] = explainer(self.x, target=target)[0]
        except (ValueError, RuntimeError, TypeError) as error:
            self._errors[key] = f"{method} at {layer!r}: {error}" if layer else f"{method}: {error}"
            return
        self.seconds[key] = time.perf_counter() - start

    def _progress_area(self):
        return self._progress if self._widget is not None else contextlib.nullcontext()

    @property
    def status(self) -> str:
        """One line on the current map (computed if need be): method, layer, class and time, or what went wrong."""
        if self.heatmap is None:
            return f"⚠ {self.error}"
        where = f" at {self.layer!r}" if self.uses_layer else " (on the input; no layer)"
        seconds = self.seconds.get(self.key)
        took = "" if seconds is None else f" · {seconds:.2f} s"
        return f"{self.method}{where} for {self.target} '{self.label}'{took}"

    def picture(self) -> np.ndarray:
        """The (H,W,3) float picture shown: the map over the image, or the image alone when the method failed."""
        heat = self.heatmap
        if heat is None:
            return to_array(self.image)
        return panel(self.image, heat, self.alpha, self.cmap)

    # --- the widget --------------------------------------------------------------------------------------------
    @property
    def widget(self):
        """The ipywidgets box: the picture on the left; the controls, a status line and a progress area."""
        if self._widget is None:
            import ipywidgets as widgets

            labels = model_info(self.model).labels
            self.controls = {
                "method": widgets.Dropdown(options=self.methods, description="method"),
                "layer": widgets.Dropdown(options=self.layers, description="layer"),
                "target": widgets.Dropdown(
                    options=[(f"{labels[i]} ({p:.0%})", i) for i, _, p in self.predictions], description="class"),
                "alpha": widgets.FloatSlider(min=0.0, max=1.0, step=0.05, description="opacity"),
                "cmap": widgets.Dropdown(options=list(dict.fromkeys([*COLORMAPS, self.cmap])),
                                         description="colour map"),
            }
            self._image = widgets.Image(format="png")
            self._status = widgets.HTML()
            self._progress = widgets.Output()
            self._widget = widgets.HBox([self._image, widgets.VBox([*self.controls.values(), self._status,
                                                                     self._progress])])
            for name, control in self.controls.items():
                control.observe(lambda change, name=name: self._on_change(name, change["new"]), names="value")
            self._refresh()
        return self._widget

    def _on_change(self, name: str, value) -> None:
        if not self._syncing:
            self.set(**{name: value})

    def _refresh(self) -> None:
        if self._widget is None:
            return
        self._syncing = True
        try:
            for name, control in self.controls.items():
                control.value = getattr(self, name)
            self.controls["layer"].disabled = not self.uses_layer
        finally:
            self._syncing = False
        if self.key not in self._maps and self.key not in self._errors and is_slow(self.method):
            self._status.value = f"computing {self.method} (one forward pass per channel or patch) …"
        self._image.value = _png(self.picture(), self.size)
        self._status.value = html.escape(self.status)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:  # describes the state without computing anything
        layer = f"layer={self.layer!r}, " if self.uses_layer else ""
        return (f"Explorer(method={self.method!r}, {layer}target={self.target} '{self.label}', "
                f"{len(self._maps)} maps computed)")


def explore(model: nn.Module, image, methods: Sequence[str] | None = None, **options) -> Explorer:
    """An :class:`Explorer` for ``image`` (shown when it is the last expression of a Jupyter cell)::

        camlab.widgets.explore(camlab.load_model("efficientnet_lite0"), "cat")
    """
    return Explorer(model, image, methods, **options)

"""Checks for chapter 08 (capstone): a new CAM method written as a small subclass of camlab's base class.

The two formulas are variants camlab does not ship (XGrad-CAM with the positive gradients only; the largest gradient
where the channel is active). The check tests the student's own ``channel_weights`` on worked examples (the task's
formula by hand) and, when grading, on cases drawn from ``HIDDEN_SEED``, not the map of some class that happens to
give it: a subclass of one of camlab's methods (``class MyCAM(camlab.XGradCAM): pass``) fails. It also checks the
explainer contract on a tiny net."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, cases_for, close, run_check


def positive_xgradcam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Exercise 1's weights: XGrad-CAM (Fu et al., BMVC 2020) with the positive gradients only,
    :math:`w_k = \\sum_{ij} \\frac{A^k_{ij}}{\\sum_{ab} A^k_{ab}} \\max(g^k_{ij}, 0)`, and 0 for a channel whose
    activations sum to 0. (N,K,h,w) x 2 -> (N,K)."""
    total = activations.sum(dim=(2, 3), keepdim=True)
    share = torch.where(total != 0, activations / torch.where(total != 0, total, torch.ones_like(total)), 0.0)
    return (share * gradients.clamp(min=0)).sum(dim=(2, 3))


def active_max_gradient_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Exercise 2's weights: the largest gradient among the positions where the channel is active,
    :math:`w_k = \\max_{ij:\\,A^k_{ij} > 0} g^k_{ij}`, and 0 for a channel active nowhere. (N,K,h,w) x 2 -> (N,K)."""
    largest = torch.where(activations > 0, gradients, -torch.inf).amax(dim=(2, 3))
    return torch.where(torch.isfinite(largest), largest, 0.0)


#: one worked example for both tasks (the notebook prints it): channel 0 is active at three positions, channel 1
#: nowhere
_A = torch.tensor([[[[3., 1.], [2., 0.]], [[0., 0.], [0., 0.]]]])
_G = torch.tensor([[[[-2., -1.], [2., 1.]], [[0., 2.], [-1., -3.]]]])

#: task -> (its reference weights, worked examples ((activations, gradients), weights), the task in words)
TASKS = {
    "positive_xgradcam": (
        positive_xgradcam_weights,
        [((_A, _G), torch.tensor([[2 / 3, 0.]]))],
        "XGrad-CAM with the positive gradients only: w_k = sum_ij (A_ij / sum_ab A_ab) max(g_ij, 0), and 0 for a "
        "channel whose activations sum to 0"),
    "active_maxgrad": (
        active_max_gradient_weights,
        [((_A, _G), torch.tensor([[2., 0.]])),
         # a second example: one channel, active at two positions
         ((torch.tensor([[[[1., 0.], [0., 2.]]]]), torch.tensor([[[[-3., 5.], [4., -1.]]]])), torch.tensor([[-1.]]))],
        "the largest gradient where the channel is active: w_k = max of g_ij over the positions with A_ij > 0 (which "
        "may be negative), and 0 for a channel that is active nowhere"),
}

#: hidden cases per task and seed
HIDDEN_CASES = 4


def _hidden_case(task: str, generator: torch.Generator) -> tuple[tuple, torch.Tensor]:
    """One random case ``((activations, gradients), weights)`` for ``task``: small integers, N in 1..2, K in
    5..7, h in 1..3, w in 2..4, activations >= 0 (as after a ReLU), and in every image the edge cases the
    capstone's formulas must handle: a channel active nowhere, a channel whose gradients are negative wherever it is
    active, a channel whose largest gradient sits where it is inactive. The expected weights come from the task's
    reference."""
    def draw(high, *shape):
        return torch.randint(0, high, shape, generator=generator).float()

    n, k = int(draw(2, 1)) + 1, int(draw(3, 1)) + 5
    h, w = int(draw(3, 1)) + 1, int(draw(3, 1)) + 2           # w >= 2: room for an inactive position
    activations = draw(4, n, k, h, w) * (draw(3, n, k, h, w) > 0)    # about a third of the positions inactive
    gradients = draw(9, n, k, h, w) - 4                              # -4 .. 4
    activations[:, 0] = 0                                            # active nowhere
    activations[:, 1, 0, 0], activations[:, 1, -1, -1] = 2, 1        # negative gradients wherever it is active,
    gradients[:, 1] = torch.where(activations[:, 1] > 0, -gradients[:, 1].abs() - 1, gradients[:, 1].abs() + 1)
    activations[:, 2, 0, 0], activations[:, 2, -1, -1] = 1, 0        # positive ones elsewhere; channel 2 has its
    gradients[:, 2, -1, -1] = gradients[:, 2].amax(dim=(1, 2)) + 2   # largest gradient where it is inactive
    order = torch.randperm(k, generator=generator)                  # the edge cases in any channel
    activations, gradients = activations[:, order].contiguous(), gradients[:, order].contiguous()
    return (activations, gradients), TASKS[task][0](activations, gradients)


def hidden_cases(task: str, hidden_seed: int) -> list:
    """The hidden cases of ``task`` for the grader's ``HIDDEN_SEED`` (drawn at grading time, in the grader):
    :data:`HIDDEN_CASES` of one kind, since every case holds all the edge cases (:func:`_hidden_case`)."""
    return cases_for(task, [], None, hidden_seed, (partial(_hidden_case, task),), rounds=HIDDEN_CASES)[1]


class _CheckNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU (``features``, 6x6) -> flatten -> linear(4 classes): no GAP, so the gradient
    varies in space."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 6, 3, padding=1,
                                                                                       stride=2), nn.ReLU())
        self.classifier = nn.Linear(6 * 6 * 6, 4)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _model_and_inputs(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    model = _CheckNet().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model, torch.randn(2, 3, 12, 12, generator=generator)


def _hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_full_backward_hooks", None) or {}) for m in model.modules())


def _check_contract(cls) -> None:
    """Build ``cls(model, layer="features")`` on a tiny net and check the explainer contract: one (N,H,W) map per
    image in [0, 1], no hooks left, the caller's train/eval mode restored."""
    model, x = _model_and_inputs()
    model.train()
    heat = cls(model, layer="features")(x, target=[0, 3])
    if tuple(heat.shape) != (2, 12, 12):
        raise AssertionError(f"the map has shape {tuple(heat.shape)}, expected (N,H,W) = (2, 12, 12): one map per "
                             "image at the input's resolution")
    if not torch.isfinite(heat).all() or heat.min() < 0 or heat.max() > 1:
        raise AssertionError("the scaled map must be finite and in [0, 1]")
    if _hooks_left(model):
        raise AssertionError("hooks were left on the model after the call")
    if not model.training:
        raise AssertionError("the model's training mode was not restored")


def _borrowed(cls) -> str | None:
    """Why ``cls`` does not compute its own weights (a camlab method as base, or camlab's ``channel_weights``)."""
    import camlab

    for method in camlab.METHODS.values():
        if isinstance(method, type) and issubclass(cls, method):
            return (f"{cls.__name__} is a subclass of camlab.{method.__name__}: build on camlab.GradientMethod and "
                    "write channel_weights yourself")
    own = getattr(cls, "channel_weights", None)
    if own is None or (getattr(own, "__module__", None) or "").startswith("camlab."):
        return f"{cls.__name__} must define channel_weights(self, activations, gradients) itself"
    return None


def own_channel_weights(cls, activations, gradients):
    """``cls``'s own ``channel_weights`` on one case, after checking that it is a class that computes its own
    weights and keeps the explainer contract (``camlab course grade`` runs this next to the student's class)."""
    if not isinstance(cls, type):
        raise TypeError(f"pass the class itself (e.g. MyCAM), not an instance of {type(cls).__name__}")
    reason = _borrowed(cls)
    if reason:
        raise TypeError(reason)
    _check_contract(cls)
    model, _ = _model_and_inputs()
    return cls(model, layer="features").channel_weights(activations.clone(), gradients.clone())


def check_custom_method(cls, task: str = "positive_xgradcam", hidden: list | None = None,
                        hidden_seed: int | None = None) -> CheckResult:
    """``cls`` is your subclass of ``camlab.GradientMethod`` overriding ``channel_weights(activations, gradients)``
    (both (N,K,h,w)) to return (N,K) weights. The check calls your ``channel_weights`` on worked examples of the
    formula ``task`` names (see :data:`TASKS`) and verifies the explainer contract on a tiny net. ``hidden_seed``
    (the grader's ``HIDDEN_SEED``): :data:`HIDDEN_CASES` cases drawn from it instead (:func:`hidden_cases`), with
    the edge cases of the formula; ``hidden``: explicit cases instead."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    _, visible, words = TASKS[task]
    if hidden_seed is not None:
        hidden = hidden_cases(task, hidden_seed)
    name, cases = cases_for(f"custom method ({task})", visible, hidden)

    def weights(activations, gradients):
        if hasattr(cls, "apply") and not isinstance(cls, type):  # the grader's stand-in for a sandboxed class
            return cls.apply("camlab.exercises.ch08:own_channel_weights", activations, gradients)
        return own_channel_weights(cls, activations, gradients)

    return run_check(
        name, weights, cases,
        hint=f"{words}. Subclass camlab.GradientMethod and override channel_weights(self, activations, gradients) "
             "to return (N,K) weights; the base class does the hooks, the ReLU, the upsampling and the scaling.",
        compare=lambda actual, expected: close(actual, expected, atol=1e-4))


#: the student's own scenes for the capstone experiment: ``make_scenes(40, seed=2000 + seed, distractors=1)``
EXPERIMENT_SCENES, EXPERIMENT_SEED_BASE = 40, 2000


def maxgrad_shift_reference(seed: int, layer: str = "features.10") -> torch.Tensor:
    """(40,) per scene: the mass inside the object's mask of exercise 2's max-gradient Grad-CAM
    (:func:`active_max_gradient_weights`) minus that of XGrad-CAM, both scaled maps of ``lab_gap`` at ``layer``
    explaining each scene's label, on ``make_scenes(40, seed=2000 + seed, distractors=1)``."""
    from camlab.lab import make_scenes
    from camlab.methods import GradientMethod, XGradCAM
    from camlab.metrics import mass_inside
    from camlab.models import load_model, preprocess

    class _MaxGrad(GradientMethod):
        def channel_weights(self, activations, gradients):
            return active_max_gradient_weights(activations, gradients)

    model = load_model("lab_gap")
    scenes = make_scenes(EXPERIMENT_SCENES, seed=EXPERIMENT_SEED_BASE + int(seed), distractors=1)
    x, labels = preprocess(scenes.images, model), scenes.labels.tolist()
    inside = [mass_inside(method(model, layer=layer)(x, target=labels), scenes.masks) for method in (_MaxGrad, XGradCAM)]
    return (inside[0] - inside[1]).detach()


def check_maxgrad_shift(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(seed) -> (40,)``: per scene, MaxGradCAM's mass inside the object minus XGrad-CAM's on the student's
    own scenes (:func:`maxgrad_shift_reference`, ``seed`` = ``STUDENT_SEED``); ``hidden`` lists further seeds, so an
    answer copied from another student fails. The reference is computed after the student's function returned."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    name = "capstone experiment" if hidden is None else "capstone experiment (hidden seeds)"
    return run_check(
        name, lambda s: _detached(student(s)), [((s,), s) for s in seeds],
        compare=lambda actual, expected: close(torch.as_tensor(actual).reshape(-1), maxgrad_shift_reference(expected),
                                               atol=1e-3),
        hint="draw make_scenes(40, seed=2000 + seed, distractors=1), explain each scene's label on lab_gap at "
             "'features.10' with your MaxGradCAM and with XGrad-CAM (scaled maps), and return MaxGradCAM's mass inside "
             "scenes.masks minus XGrad-CAM's, one value per scene")


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value

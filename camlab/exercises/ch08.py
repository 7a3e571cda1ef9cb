"""Checks for chapter 08 (capstone): a new CAM method written as a small subclass of camlab's base class."""
from __future__ import annotations

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, close, run_check

#: task -> (channel weights from activations A and gradients g, both (N,K,h,w), as (N,K); the task in words)
TASKS = {
    "xgradcam": (
        lambda A, g: torch.where(A.sum(dim=(2, 3)) != 0,
                                 (A * g).sum(dim=(2, 3)) / torch.where(A.sum(dim=(2, 3)) != 0, A.sum(dim=(2, 3)),
                                                                       torch.ones_like(A.sum(dim=(2, 3)))),
                                 torch.zeros_like(A.sum(dim=(2, 3)))),
        "XGrad-CAM: w_k = sum_ij A_ij g_ij / sum_ab A_ab (0 for a channel whose activations sum to 0)"),
    "maxgrad": (
        lambda A, g: g.amax(dim=(2, 3)),
        "max-gradient Grad-CAM: w_k = max_ij g_ij (the largest gradient instead of the mean)"),
}


class _CheckNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU (``features``, 6x6) -> flatten -> linear(4 classes): no GAP, so the gradient
    varies in space and XGrad-CAM, Grad-CAM and the max-gradient variant all differ."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 6, 3, padding=1,
                                                                                       stride=2), nn.ReLU())
        self.classifier = nn.Linear(6 * 6 * 6, 4)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _model_and_inputs(seed: int) -> tuple[nn.Module, torch.Tensor]:
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = _CheckNet().eval()
        x = torch.randn(2, 3, 12, 12)
    finally:
        torch.random.set_rng_state(state)
    return model, x


def _hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_full_backward_hooks", None) or {}) for m in model.modules())


def _expected(model: nn.Module, x: torch.Tensor, target: list[int], weights_fn) -> torch.Tensor:
    """The task's raw map, from scratch: hook, autograd.grad, weights, ReLU(sum_k w_k A^k)."""
    captured = []
    handle = model.features.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    activations = captured[0]
    score = logits.gather(1, torch.tensor(target)[:, None]).sum()
    (gradients,) = torch.autograd.grad(score, activations)
    weights = weights_fn(activations.detach(), gradients)
    return torch.einsum("nk,nkhw->nhw", weights, activations.detach()).clamp_min(0)


def _run_contract(cls, seed: int, target: list[int]) -> torch.Tensor:
    """Build ``cls(model, layer="features")``, check the explainer contract, return its raw map."""
    model, x = _model_and_inputs(seed)
    model.train()  # the contract: eval mode during the call, the caller's mode restored afterwards
    explainer = cls(model, layer="features")
    heat = explainer(x, target=target)
    if tuple(heat.shape) != (2, 12, 12):
        raise AssertionError(f"the map has shape {tuple(heat.shape)}, expected (N,H,W) = (2, 12, 12): one map per "
                             "image at the input's resolution")
    if not torch.isfinite(heat).all() or heat.min() < 0 or heat.max() > 1:
        raise AssertionError("the scaled map must be finite and in [0, 1]")
    if _hooks_left(model):
        raise AssertionError("hooks were left on the model after the call")
    if not model.training:
        raise AssertionError("the model's training mode was not restored")
    raw = explainer(x, target=target, raw=True)
    if _hooks_left(model):
        raise AssertionError("hooks were left on the model after the call")
    return raw


def check_custom_method(cls, task: str = "xgradcam") -> CheckResult:
    """``cls`` is your subclass (e.g. of ``camlab.GradientMethod`` overriding ``channel_weights``). The check builds
    it on hidden small nets, verifies the contract (one (N,H,W) map per image in [0, 1], no hooks left, the model's
    mode restored) and compares the raw map with the one ``task`` defines (see :data:`TASKS`)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    weights_fn, words = TASKS[task]
    if not isinstance(cls, type):
        def not_a_class():
            raise TypeError(f"pass the class itself (e.g. MyCAM), not an instance of {type(cls).__name__}")

        return run_check(f"custom method ({task})", not_a_class, [((), None)], hint=words)
    cases = []
    for seed, target in ((0, [0, 1]), (1, [3, 2]), (2, [1, 1])):
        model, x = _model_and_inputs(seed)
        cases.append(((seed, target), _expected(model, x, target, weights_fn).detach()))
    return run_check(
        f"custom method ({task})", lambda seed, target: _run_contract(cls, seed, target), cases,
        hint=f"{words}. Subclass camlab.GradientMethod and override channel_weights(self, activations, gradients) "
             "to return (N,K) weights; the base class does the hooks, the ReLU, the upsampling and the scaling.",
        compare=lambda actual, expected: close(actual, expected, atol=1e-5, rtol=1e-4))

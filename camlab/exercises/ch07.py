"""Checks for chapter 07 (the variants): Grad-CAM++'s alpha, Score-CAM's weights, LayerCAM's map."""
from __future__ import annotations

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, close, run_check


def _activations_and_gradients(seed: int, shape=(2, 3, 4, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative activations (as after a ReLU, some exact zeros) and signed gradients (some exact zeros)."""
    generator = torch.Generator().manual_seed(seed)
    activations = torch.randn(shape, generator=generator, dtype=torch.float64).clamp_min(0)
    gradients = torch.randn(shape, generator=generator, dtype=torch.float64)
    gradients[torch.rand(shape, generator=generator) < 0.2] = 0.0
    return activations, gradients


def _gradcampp_alpha(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    squared = gradients.pow(2)
    denominator = 2 * squared + activations.sum(dim=(2, 3), keepdim=True) * squared * gradients
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, squared / safe, torch.zeros_like(squared))


def check_gradcampp_alpha(student) -> CheckResult:
    """``student(activations, gradients) -> alpha``: Grad-CAM++'s Eq. 19, (N,K,h,w), 0 where the denominator is 0."""
    cases = []
    for seed in (0, 1, 2):
        activations, gradients = _activations_and_gradients(seed)
        cases.append(((activations.clone(), gradients.clone()), _gradcampp_alpha(activations, gradients)))
    return run_check(
        "Grad-CAM++ alpha", student, cases,
        hint="alpha = g**2 / (2 * g**2 + S * g**3), where S = activations.sum(dim=(2, 3), keepdim=True) is the sum "
             "over ALL positions of the channel (one number per channel), multiplied by g**3 at each position "
             "(not the sum of A * g**3); keep the shape (N,K,h,w) and put 0 where the denominator is 0 "
             "(torch.where).")


class _TinyNet(nn.Module):
    """conv(3->4) -> ReLU (the layer, ``features``) -> flatten -> linear(4*4*4 -> 3): gradients vary in space."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.classifier = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _tiny_case(seed: int):
    state = torch.random.get_rng_state()
    try:
        model = _TinyNet(seed).double().eval()
        generator = torch.Generator().manual_seed(100 + seed)
        x = torch.randn(1, 3, 4, 4, generator=generator, dtype=torch.float64)
    finally:
        torch.random.set_rng_state(state)
    with torch.no_grad():
        activations = model.features(x)
    return model, x, activations


def _scorecam_weights(model, x, activations, target) -> torch.Tensor:
    upsampled = nn.functional.interpolate(activations, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
    flat = upsampled.flatten(1)
    low, high = flat.amin(dim=1)[:, None, None], flat.amax(dim=1)[:, None, None]
    varying = (high > low)[:, 0, 0]
    masks = torch.where(high > low, (upsampled - low) / torch.where(high > low, high - low, torch.ones_like(high)),
                        torch.zeros_like(upsampled))
    with torch.no_grad():
        probabilities = model(x * masks[:, None]).softmax(dim=1)[:, target]
    return torch.where(varying, probabilities, torch.zeros_like(probabilities))


def check_scorecam_weights(student) -> CheckResult:
    """``student(model, x, activations, target) -> (K,)`` Score-CAM weights (Algorithm 1) for one image."""
    cases = []
    for seed, target in ((0, 0), (1, 2), (2, 1)):
        model, x, activations = _tiny_case(seed)
        cases.append(((model, x, activations, target), _scorecam_weights(model, x, activations, target)))
    return run_check(
        "Score-CAM weights", student, cases,
        hint="for each channel k: upsample A^k to x's size (bilinear, align_corners=False), min-max scale it to "
             "[0, 1], run the model on x * mask and take the SOFTMAX PROBABILITY of the target class (a softmax over "
             "classes, per masked input; not a softmax over channels, not the raw logit); a constant channel gets 0.",
        compare=lambda actual, expected: close(torch.as_tensor(actual).reshape(-1), expected, atol=1e-6))


def _layercam_map(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    return (gradients.clamp_min(0) * activations).sum(dim=1).clamp_min(0)


def check_layercam_map(student) -> CheckResult:
    """``student(activations, gradients) -> (N,h,w)`` LayerCAM's unscaled map."""
    cases = []
    for seed in (3, 4, 5):
        activations, gradients = _activations_and_gradients(seed)
        cases.append(((activations.clone(), gradients.clone()), _layercam_map(activations, gradients)))
    return run_check(
        "LayerCAM map", student, cases,
        hint="weight every position by the positive part of its own gradient, ReLU(g) (no spatial average), "
             "multiply by A, sum over the channels (dim=1) and apply a final ReLU: shape (N,h,w).")

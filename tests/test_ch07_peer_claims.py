"""Chapter 07 states how the peer libraries compute Grad-CAM++ and Score-CAM; these tests pin those statements to
the installed libraries (test-only dependencies; skipped where they are missing)."""
from __future__ import annotations

import pytest
import torch
from torch import nn


def net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 3))
    return model.eval(), torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def activations_and_gradients(model, x, target):
    captured = {}
    handle = model[3].register_forward_hook(lambda m, i, o: captured.update(A=o))
    out = model(x)
    handle.remove()
    (g,) = torch.autograd.grad(out[0, target], captured["A"])
    return captured["A"].detach(), g


def test_torchcam_gradcampp_runs_with_alpha_equal_to_g_squared():
    """torchcam 0.5 divides a boolean-indexed copy in place, so its alpha stays g**2 (chapter 07, section 3)."""
    methods = pytest.importorskip("torchcam.methods")
    model, x = net()
    A, g = activations_and_gradients(model, x, 1)
    as_run = torch.einsum("nk,nkhw->nhw", (g**2 * g.clamp_min(0)).sum((2, 3)), A).clamp_min(0)[0]
    with methods.GradCAMpp(model, target_layer="3", input_shape=(3, 8, 8)) as extractor:
        theirs = extractor(1, model(x), normalized=False)[0][0]
    assert torch.allclose(theirs, as_run, rtol=1e-4, atol=1e-6)


def test_torchcam_scorecam_weights_are_a_softmax_over_channels_of_logit_differences():
    """Chapter 07, section 4: torchcam's Score-CAM = softmax over channels of (masked logit - unmasked logit),
    which equals the softmax over channels of the masked logits (shift invariance)."""
    methods = pytest.importorskip("torchcam.methods")
    model, x = net()
    A, _ = activations_and_gradients(model, x, 2)
    masks = A[0]
    low, high = masks.flatten(1).amin(1)[:, None, None], masks.flatten(1).amax(1)[:, None, None]
    masks = (masks - low) / (high - low).clamp_min(1e-12)  # torchcam's _normalize (8x8 layer: no upsampling)
    with torch.no_grad():
        logits = model(x * masks[:, None])[:, 2]
    weights = logits.softmax(0)
    expected = torch.einsum("k,khw->hw", weights, A[0]).clamp_min(0)
    with methods.ScoreCAM(model, target_layer="3", input_shape=(3, 8, 8)) as extractor:
        with torch.no_grad():
            theirs = extractor(2, model(x), normalized=False)[0][0]
    assert torch.allclose(theirs, expected, rtol=1e-3, atol=1e-5)

"""Chapter 02 (Grad-CAM, the derivation): gradients from a hook, the channel weights, the map."""
from __future__ import annotations

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, close, run_check


def _tiny_net(seed: int) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """A seeded conv -> ReLU -> conv -> ReLU -> flatten -> linear net (no GAP, so gradients vary over positions),
    the layer to explain (the second ReLU) and a batch of inputs."""
    generator = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(5 * 6 * 6, 7))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.4)
    net.eval()
    x = torch.randn(2, 3, 6, 6, generator=generator)
    return net, net[3], x


def _reference_gradients(net: nn.Module, layer: nn.Module, x: torch.Tensor, class_index: int):
    store = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: store.__setitem__("A", output))
    try:
        logits = net(x)
    finally:
        handle.remove()
    (gradients,) = torch.autograd.grad(logits[:, class_index].sum(), store["A"])
    return store["A"].detach(), gradients


def check_layer_gradients(student) -> CheckResult:
    """``student(model, x, layer, class_index) -> (activations, gradients)``, both (N,K,h,w): the layer's output
    captured with a forward hook and :math:`\\partial y^c / \\partial A^k_{ij}` from ``torch.autograd.grad``, for every
    image of the batch (the score of image n depends only on image n, so the gradient of the summed score works).
    The model's hooks must be gone afterwards."""
    cases = []
    for seed, class_index in ((0, 3), (1, 6)):
        net, layer, x = _tiny_net(seed)
        cases.append(((net, x, layer, class_index), _reference_gradients(net, layer, x, class_index)))

    def compare(actual, expected) -> bool:
        try:
            activations, gradients = actual
        except (TypeError, ValueError):
            return False
        leftover = any(module._forward_hooks for module in cases[0][0][0].modules()) or \
            any(module._forward_hooks for module in cases[1][0][0].modules())
        return not leftover and close(activations, expected[0], atol=1e-5) and close(gradients, expected[1], atol=1e-5)

    return run_check("layer_gradients", student, cases, compare=compare,
                     hint="handle = layer.register_forward_hook(lambda m, i, o: store.update(A=o)); logits = model(x); "
                          "handle.remove(); (g,) = torch.autograd.grad(logits[:, class_index].sum(), store['A']); "
                          "return store['A'].detach(), g")


def _gradient_cases(seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, k, h, w, generator=generator).clamp_min(0), torch.randn(n, k, h, w, generator=generator))
            for n, k, h, w in ((1, 4, 3, 5), (2, 8, 7, 7), (3, 5, 2, 6))]


def check_gradcam_weights(student) -> CheckResult:
    """``student(gradients (N,K,h,w)) -> (N,K)``: :math:`\\alpha^c_k = \\frac{1}{Z}\\sum_{ij}
    \\partial y^c / \\partial A^k_{ij}`, the spatial MEAN of the gradient (Z = h * w)."""
    cases = [((g.clone(),), g.mean(dim=(2, 3))) for _, g in _gradient_cases(4)]
    return run_check("gradcam_weights", student, cases,
                     hint="average over the two spatial dimensions: gradients.mean(dim=(2, 3)); the sum is Z times "
                          "too large (1/Z in the formula), and dim=1 would average over channels instead")


def check_gradcam_map(student) -> CheckResult:
    """``student(activations (N,K,h,w), gradients (N,K,h,w)) -> (N,h,w)``: the raw Grad-CAM map
    :math:`\\mathrm{ReLU}(\\sum_k \\alpha^c_k A^k)` at the layer's resolution (no upsampling, no scaling)."""
    cases = [((a.clone(), g.clone()), torch.einsum("nk,nkhw->nhw", g.mean(dim=(2, 3)), a).clamp_min(0))
             for a, g in _gradient_cases(5)]
    return run_check("gradcam_map", student, cases,
                     hint="alpha = gradients.mean(dim=(2, 3)); weighted sum over channels "
                          "torch.einsum('nk,nkhw->nhw', alpha, activations); then the ReLU: .clamp_min(0)")

"""Chapter 02's checks pass the right answers and fail plausible wrong ones."""
import pytest
import torch

from tests.exercise_checks import check  # noqa: F401 (the fixture)


def layer_gradients(model, x, layer, class_index):
    store = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: store.update(A=output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (gradients,) = torch.autograd.grad(logits[:, class_index].sum(), store["A"])
    return store["A"].detach(), gradients


def test_layer_gradients_pass_hook_and_autograd(check):
    assert check("ch02_layer_gradients", layer_gradients)


def leaves_the_hook(model, x, layer, class_index):
    store = {}
    layer.register_forward_hook(lambda module, inputs, output: store.update(A=output))
    logits = model(x)
    (gradients,) = torch.autograd.grad(logits[:, class_index].sum(), store["A"])
    return store["A"].detach(), gradients


def gradient_of_the_top_class(model, x, layer, class_index):
    store = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: store.update(A=output))
    logits = model(x)
    handle.remove()
    score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
    (gradients,) = torch.autograd.grad(score, store["A"])
    return store["A"].detach(), gradients


def gradient_of_the_softmax(model, x, layer, class_index):
    store = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: store.update(A=output))
    logits = model(x)
    handle.remove()
    (gradients,) = torch.autograd.grad(logits.softmax(1)[:, class_index].sum(), store["A"])
    return store["A"].detach(), gradients


@pytest.mark.parametrize("wrong", [leaves_the_hook, gradient_of_the_top_class, gradient_of_the_softmax])
def test_layer_gradients_fail_wrong_answers(wrong, check):
    assert not check("ch02_layer_gradients", wrong)


def test_gradcam_weights_pass_the_mean(check):
    assert check("ch02_gradcam_weights", lambda g: g.mean(dim=(2, 3)))


@pytest.mark.parametrize("wrong", [
    lambda g: g.sum(dim=(2, 3)),  # sum, not mean
    lambda g: g.mean(dim=1),  # over channels
    lambda g: g.clamp_min(0).mean(dim=(2, 3)),  # only positive gradients
])
def test_gradcam_weights_fail_wrong_answers(wrong, check):
    assert not check("ch02_gradcam_weights", wrong)


def gradcam_map(activations, gradients):
    return torch.einsum("nk,nkhw->nhw", gradients.mean(dim=(2, 3)), activations).clamp_min(0)


def test_gradcam_map_passes_relu_of_the_weighted_sum(check):
    assert check("ch02_gradcam_map", gradcam_map)


@pytest.mark.parametrize("wrong", [
    lambda a, g: torch.einsum("nk,nkhw->nhw", g.mean(dim=(2, 3)), a),  # no ReLU
    lambda a, g: torch.einsum("nk,nkhw->nhw", g.sum(dim=(2, 3)), a).clamp_min(0),  # sum, not mean
    lambda a, g: (g * a).sum(dim=1).clamp_min(0),  # per-position weights (HiResCAM)
])
def test_gradcam_map_fails_wrong_answers(wrong, check):
    assert not check("ch02_gradcam_map", wrong)

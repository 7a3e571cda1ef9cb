"""Chapter 02's checks pass the right answers and fail plausible wrong ones; the per-student checks pass a correct
answer for its own seed only."""
import pytest
import torch

import camlab
from camlab.exercises import ch02
from camlab.lab import make_scenes

from tests.exercise_checks import HIDDEN_SEEDS, check, drawn_cases_differ_by_seed  # noqa: F401 (check: the fixture)


def layer_gradients(model, x, layer, class_index):
    if isinstance(layer, str):
        layer = model.get_submodule(layer)
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


def modules_only(model, x, layer, class_index):
    store = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: store.update(A=output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (gradients,) = torch.autograd.grad(logits[:, class_index].sum(), store["A"])
    return store["A"].detach(), gradients


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


@pytest.mark.parametrize("wrong", [modules_only, leaves_the_hook, gradient_of_the_top_class,
                                   gradient_of_the_softmax])
def test_layer_gradients_fail_wrong_answers(wrong, check):
    assert not check("ch02_layer_gradients", wrong)


def first_image_only(model, x, layer, class_index):
    """The first image's gradient for every image: right at a layer after the ReLU (a linear head's gradient is its
    weight row, the same for every image), wrong before it, where each image's ReLU masks its own gradient."""
    activations, _ = layer_gradients(model, x, layer, class_index)
    _, gradient = layer_gradients(model, x[:1], layer, class_index)
    return activations, gradient.expand_as(activations)


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
def test_layer_gradients_hidden_cases_catch_a_gradient_shared_by_the_batch(hidden_seed):
    """The hidden cases are drawn from the grader's HIDDEN_SEED and always hold a layer given by (nested) name, an
    all-zero image and the convolution before the ReLU for a batch: an answer wrong only there fails."""
    from camlab.course.student import run_check_cell
    assert run_check_cell("ch02_layer_gradients", first_image_only, hidden=False)
    assert run_check_cell("ch02_layer_gradients", layer_gradients, hidden_seed=hidden_seed)
    assert not run_check_cell("ch02_layer_gradients", first_image_only, hidden_seed=hidden_seed)


def test_layer_gradients_hidden_cases_change_with_the_hidden_seed():
    assert drawn_cases_differ_by_seed(ch02.GRADIENT_KINDS)


def softmax_weights(alpha, p, c):
    return p[:, c, None] * (alpha[:, c] - torch.einsum("nc,nck->nk", p, alpha))


def test_softmax_weights_pass_the_chain_rule(check):
    assert check("ch02_softmax_weights", softmax_weights)


def test_softmax_weights_match_autograd_through_a_softmax():
    """The reference is the chain rule: for logits y = A w (one channel vector per class), the gradient of
    softmax(y)_c with respect to A equals softmax_weights(w, p, c)."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 6, generator=g, dtype=torch.float64)          # (C, K): alpha^j = w_j for a linear score
    a = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    p = (w @ a).softmax(0)
    (gradient,) = torch.autograd.grad(p[2], a)
    expected = ch02.softmax_weights_reference(w[None], p.detach()[None], 2)[0]
    assert torch.allclose(gradient, expected)


@pytest.mark.parametrize("wrong", [
    lambda alpha, p, c: alpha[:, c] - torch.einsum("nc,nck->nk", p, alpha),                 # no factor p_c
    lambda alpha, p, c: p[:, c, None] * (alpha[:, c] - alpha.mean(dim=1)),                  # plain mean over classes
    lambda alpha, p, c: p[:, c, None] * alpha[:, c],                                        # nothing mixed in
])
def test_softmax_weights_fail_wrong_answers(wrong, check):
    assert not check("ch02_softmax_weights", wrong)


def test_softmax_weights_pass_only_for_their_own_seed(monkeypatch):
    """An answer typed in for seed 0 (copied from a classmate) passes seed 0's check and fails seed 1's."""
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)  # a failing check returns False
    (_, _, c0), expected0 = ch02.softmax_weights_case(0)
    copied = lambda alpha, p, c: expected0  # noqa: E731
    assert ch02.check_softmax_weights(copied, seed=0)
    assert not ch02.check_softmax_weights(copied, seed=1)
    assert ch02.check_softmax_weights(softmax_weights, seed=1)


def test_softmax_weights_differ_between_seeds():
    assert not torch.allclose(ch02.softmax_weights_case(0)[1], ch02.softmax_weights_case(1)[1])


def removal_effect(model, seed):
    scenes = make_scenes(40, seed=seed, distractors=1)
    removed = scenes.images.clone()
    for i, objects in enumerate(scenes.objects):
        x0, y0, x1, y1 = (int(v) for v in objects[1]["box"])
        removed[i, :, y0:y1, x0:x1] = 0.5
    with torch.no_grad():
        before = model(camlab.preprocess(scenes.images, model)).gather(1, scenes.labels[:, None])[:, 0]
        after = model(camlab.preprocess(removed, model)).gather(1, scenes.labels[:, None])[:, 0]
    return after - before


def test_removal_effect_passes_the_experiment(check):
    assert check("ch02_removal_effect", removal_effect)


def removes_the_labelled_object(model, seed):
    scenes = make_scenes(40, seed=seed, distractors=1)
    removed = scenes.images.clone()
    for i, objects in enumerate(scenes.objects):
        x0, y0, x1, y1 = (int(v) for v in objects[0]["box"])
        removed[i, :, y0:y1, x0:x1] = 0.5
    with torch.no_grad():
        before = model(camlab.preprocess(scenes.images, model)).gather(1, scenes.labels[:, None])[:, 0]
        after = model(camlab.preprocess(removed, model)).gather(1, scenes.labels[:, None])[:, 0]
    return after - before


@pytest.mark.parametrize("wrong", [
    removes_the_labelled_object,
    lambda model, seed: -removal_effect(model, seed),                 # before minus after
    lambda model, seed: removal_effect(model, seed + 1),              # another seed's scenes
])
def test_removal_effect_fails_wrong_answers(wrong, check):
    assert not check("ch02_removal_effect", wrong)


def test_removal_effect_passes_only_for_its_own_seed(monkeypatch):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)  # a failing check returns False
    model = camlab.load_model("lab_vgg")
    answers = removal_effect(model, 0)
    assert ch02.check_removal_effect(lambda model, seed: answers, seed=0)
    assert not ch02.check_removal_effect(lambda model, seed: answers, seed=1)

"""Chapter 02 (Grad-CAM, the derivation): gradients from a hook (a layer given as a module or by name), the
weights of a softmax target, and a per-student removal experiment."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, cases_for, close, integer, run_check, small_integers, with_weights


def _two_channel_net(linear_weight: torch.Tensor) -> nn.Sequential:
    """1x1 conv with weights (1, -1) -> ReLU -> flatten -> linear without bias: for a (N,1,2,2) input the ReLU's
    output is (N,2,2,2) and the gradient of class c's score with respect to it is ``linear_weight[c]`` reshaped to
    (2,2,2), for every image (a linear head's gradient is its weight row)."""
    return with_weights(lambda: nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Flatten(),
                                              nn.Linear(8, linear_weight.shape[0], bias=False)),
                        torch.tensor([1.0, -1.0]), linear_weight)


def _layer_gradient_cases() -> list:
    """Worked example: x = [[1, -2], [3, 0]] gives ReLU(x) and ReLU(-x) as the layer's two channels; the gradient
    for class 1 (not the top class, 2) is row 1 of the linear weight; once with the ReLU module, once with its
    name "1"."""
    net = _two_channel_net(torch.tensor([[1., 0., -2., 3., 0., 1., 1., -1.], [2., -1., 0., 0., 1., 1., 0., 2.],
                                         [0., 0., 1., 0., -1., 2., 3., 0.]]))
    x = torch.tensor([[[[1., -2.], [3., 0.]]]])
    return [((net, x, net[1], 1),
             (torch.tensor([[[[1., 0.], [3., 0.]], [[0., 2.], [0., 0.]]]]),
              torch.tensor([[[[2., -1.], [0., 0.]], [[1., 1.], [0., 2.]]]]))),
            ((net, x, "1", 1), (torch.tensor([[[[1., 0.], [3., 0.]], [[0., 2.], [0., 0.]]]]),
                                   torch.tensor([[[[2., -1.], [0., 0.]], [[1., 1.], [0., 2.]]]])))]


def layer_gradients_reference(model: nn.Module, x: torch.Tensor, layer, class_index: int):
    """The layer's output (a forward hook, removed afterwards) and the gradient of the summed class score with
    respect to it; ``layer`` a module or its dotted name."""
    module = model.get_submodule(layer) if isinstance(layer, str) else layer
    store = {}
    handle = module.register_forward_hook(lambda _, inputs, output: store.update(output=output))
    try:
        with torch.enable_grad():
            logits = model(x)
    finally:
        handle.remove()
    (gradients,) = torch.autograd.grad(logits[:, class_index].sum(), store["output"])
    return store["output"].detach(), gradients


def _gradient_case(generator: torch.Generator, by_name: bool = False, nested: bool = False, zero_image: bool = False,
                   before_relu: bool = False):
    """A random small CNN (a 1x1 or 3x3 convolution with K = 2-3 channels -> ReLU -> flatten -> linear, integer
    weights) on 1-3 images of 1x2x2 or 1x3x3 pixels, a random class (often not the top one). ``by_name``: the layer
    as its dotted name; ``nested``: the convolution and ReLU inside a block (names ``0.0``, ``0.1``);
    ``zero_image``: one image all zero; ``before_relu``: the convolution's output (its gradient is masked by the
    ReLU's derivative, 0 where the output is not positive: it differs from image to image, 2-3 of them)."""
    channels, size, kernel = integer(generator, 2, 3), integer(generator, 2, 3), (1, 3)[integer(generator, 0, 1)]
    classes, batch = integer(generator, 2, 4), integer(generator, 2 if before_relu else 1, 3)
    block = [nn.Conv2d(1, channels, kernel, padding=kernel // 2, bias=False), nn.ReLU()]
    layers = [nn.Sequential(*block)] if nested else block
    model = with_weights(lambda: nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * size * size, classes,
                                                                                 bias=False)),
                         small_integers(generator, (channels, 1, kernel, kernel), -2, 2),
                         small_integers(generator, (classes, channels * size * size), -3, 3))
    x = small_integers(generator, (batch, 1, size, size), -3, 3)
    if zero_image:
        x[integer(generator, 0, batch - 1)] = 0
    index = 0 if before_relu else 1
    name = f"0.{index}" if nested else str(index)
    layer = name if by_name else model.get_submodule(name)
    class_index = integer(generator, 0, classes - 1)
    return (model, x, layer, class_index), layer_gradients_reference(model, x, layer, class_index)


#: the kinds of hidden case (``hidden_seed``): the layer given as a module or by name (a nested ``0.0`` too), an
#: all-zero image, the convolution before the ReLU; batches of 1-3 images
GRADIENT_KINDS = (_gradient_case, partial(_gradient_case, by_name=True), partial(_gradient_case, by_name=True,
                                                                                   nested=True, before_relu=True),
                  partial(_gradient_case, zero_image=True), partial(_gradient_case, before_relu=True))


def check_layer_gradients(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(model, x, layer, class_index) -> (activations, gradients)``, both (N,K,h,w), where ``layer`` is a
    module of ``model`` or its dotted name (``"blocks.5"``, as ``model.get_submodule`` takes it): the layer's output
    captured with a forward hook and :math:`\\partial y^c / \\partial A^k_{ij}` from ``torch.autograd.grad``, for every
    image of the batch (the score of image n depends only on image n, so the gradient of the summed score works).
    The model's hooks must be gone afterwards. ``hidden_seed`` draws :data:`GRADIENT_KINDS`."""
    name, cases = cases_for("layer_gradients", _layer_gradient_cases(), hidden, hidden_seed, GRADIENT_KINDS)

    def compare(actual, expected) -> bool:
        try:
            activations, gradients = actual
        except (TypeError, ValueError):
            return False
        leftover = any(module._forward_hooks for args, _ in cases for module in args[0].modules())
        return not leftover and close(activations, expected[0], atol=1e-5) and close(gradients, expected[1], atol=1e-5)

    return run_check(name, student, cases, compare=compare,
                     hint="if `layer` is a string, look the module up by name first; register a forward hook on it that stores its output, run the model, remove the hook "
                          "(also if the forward pass fails), then ask autograd for the gradient of the class's score "
                          "(summed over the batch) with respect to the STORED output, not the input")




def softmax_weights_reference(alpha: torch.Tensor, p: torch.Tensor, c: int) -> torch.Tensor:
    r"""The Grad-CAM weights of the target :math:`p_c` from those of every logit (chain rule through the softmax):
    :math:`\alpha^{p_c}_k = p_c\,(\alpha^c_k - \sum_j p_j \alpha^j_k)`; ``alpha`` (N, C, K), ``p`` (N, C)."""
    mixture = torch.einsum("nc,nck->nk", p, alpha)
    return p[:, c, None] * (alpha[:, c] - mixture)


def softmax_weights_case(seed: int, n: int = 3, classes: int = 6, channels: int = 5) -> tuple[tuple, torch.Tensor]:
    """A seeded case: random logit weights (N, C, K), probabilities from random logits, the class ``seed % C``."""
    g = torch.Generator().manual_seed(int(seed))
    alpha = torch.randn(n, classes, channels, generator=g, dtype=torch.float64)
    p = (3 * torch.randn(n, classes, generator=g, dtype=torch.float64)).softmax(dim=1)
    c = int(seed) % classes
    return (alpha, p, c), softmax_weights_reference(alpha, p, c)


#: edge case: a saturated softmax (p_c = 1) has zero weights, whatever the logits' weights are
SATURATED = ((torch.tensor([[[1., 2.], [3., -1.]]], dtype=torch.float64), torch.tensor([[1., 0.]],
             dtype=torch.float64), 0), torch.zeros(1, 2, dtype=torch.float64))


def check_softmax_weights(student, seed: int, hidden: list | None = None) -> CheckResult:
    r"""``student(alpha (N,C,K), p (N,C), c) -> (N,K)``: the Grad-CAM channel weights of the probability
    :math:`p_c`, given the weights :math:`\alpha^j_k` of every class's logit and the probabilities: the chapter's
    chain-rule identity :math:`\alpha^{p_c} = p_c(\alpha^c - \sum_j p_j\alpha^j)`. ``seed`` is the student's own
    (``STUDENT_SEED``); ``hidden`` lists further seeds (the saturated case is added to them)."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    cases = [softmax_weights_case(s) for s in seeds] + ([] if hidden is None else [SATURATED])
    name = "softmax_weights" if hidden is None else "softmax_weights (hidden cases)"
    return run_check(name, student, cases,
                     hint="the probability-weighted average of every class's weights (a sum over the classes, "
                          "weighted by p, not a plain mean), subtracted from class c's weights, the difference "
                          "multiplied by p_c")


#: the removal experiment's protocol: scenes per seed (one distractor each), and the grey that replaces a box
REMOVAL_SCENES, REMOVAL_GREY = 40, 0.5


def removal_reference(model: nn.Module, seed: int) -> torch.Tensor:
    """The experiment done right: on ``make_scenes(40, seed=seed, distractors=1)``, each scene's label logit after
    the distractor's box (``scenes.objects[i][1]["box"]``, x0, y0, x1, y1 with exclusive ends) is filled with grey
    0.5, minus the label logit of the unchanged scene; both inputs preprocessed for ``model``."""
    from camlab.lab import make_scenes
    from camlab.preprocessing import preprocess

    scenes = make_scenes(REMOVAL_SCENES, seed=seed, distractors=1)
    removed = scenes.images.clone()
    for i, objects in enumerate(scenes.objects):
        x0, y0, x1, y1 = (int(v) for v in objects[1]["box"])
        removed[i, :, y0:y1, x0:x1] = REMOVAL_GREY
    with torch.no_grad():
        before = model(preprocess(scenes.images, model)).gather(1, scenes.labels[:, None])[:, 0]
        after = model(preprocess(removed, model)).gather(1, scenes.labels[:, None])[:, 0]
    return after - before


def _same_changes(actual, expected) -> bool:
    reference = expected()
    return close(actual, reference, atol=1e-3, rtol=1e-3)


def check_removal_effect(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(model, seed) -> (40,)``: per scene of ``make_scenes(40, seed=seed, distractors=1)``, the change of
    the label's logit when the distractor's box is greyed out (0.5, before preprocessing): after minus before. The
    reference is recomputed for each seed (``STUDENT_SEED``, and further seeds in ``hidden``)."""
    from camlab.models import load_model

    model = load_model("lab_vgg")
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    cases = [((model, s), partial(removal_reference, model, s)) for s in seeds]
    name = "removal_effect" if hidden is None else "removal_effect (hidden seeds)"
    return run_check(name, student, cases, compare=_same_changes,
                     hint="draw the scenes with your seed and one distractor, copy the images, fill the second "
                          "object's box with 0.5 in every channel (rows y0:y1, columns x0:x1), preprocess both "
                          "batches for the model and subtract the label logits, after minus before")

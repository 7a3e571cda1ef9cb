r"""Sanity check by cascading model-parameter randomization (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018).

The layers of a copy of the model are re-initialised one group at a time, from the output down, and the map after
each step is compared with the original map by Spearman rank correlation. A method that explains the *model* must
lose that correlation as the model is destroyed; a method that stays correlated (the paper's finding for Guided
Backprop) is showing something about the input (edges) rather than what the model learned.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from camlab.hooks import preserved_state
from camlab.methods.registry import builder
from camlab.metrics._common import probabilities, refuses_nan_maps, saliency, spearman
from camlab.progress import progress_bar
from camlab.targets import fixed


#: added to the step seeds so that a re-initialisation never repeats the draws of a model built after
#: ``torch.manual_seed(0)`` (which would "randomize" a layer back to its own weights)
_SEED_OFFSET = 0x5A17C0DE


def step_seed(seed: int, step: int) -> int:
    """The seed under which :func:`sanity_check` draws step ``step``'s re-initialisation (``seed`` is its argument):
    a by-hand cascade that seeds its steps the same way (and randomizes the same groups in the same order)
    reproduces camlab's numbers exactly. A step whose reset draws nothing (batch norm: weight 1, bias 0, running
    statistics 0 and 1) does not depend on it."""
    return _SEED_OFFSET + seed * 100_003 + step


def _execution_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules that own parameters directly, in the order the forward pass first calls them."""
    order: list[str] = []
    owners = {name: module for name, module in model.named_modules() if any(True for _ in module.parameters(False))}
    handles = [module.register_forward_hook(lambda m, i, o, name=name: order.append(name) if name not in order
                                            else None) for name, module in owners.items()]
    try:
        with preserved_state(model), torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    # parameters never used in the forward pass (e.g. an unused head) are left out: randomizing them changes nothing
    return order


def cascade_layers(model: nn.Module, x: torch.Tensor, granularity: str = "blocks") -> list[str]:
    """The groups :func:`sanity_check` randomizes, top (output side) first.

    ``"modules"``: every module that owns parameters (a conv, a batch norm, a linear layer, ...).
    ``"blocks"``: modules grouped by their top-level child of the model, or by the child's own child when the
    top-level child is a container (``nn.Sequential`` / ``nn.ModuleList``), e.g. ``conv_stem``, ``blocks.0`` ...
    ``blocks.6``, ``conv_head``, ``classifier`` for EfficientNet. A group's place is its last module's."""
    order = _execution_order(model, x)
    if granularity == "modules":
        return order[::-1]
    if granularity != "blocks":
        raise ValueError(f"granularity must be 'blocks' or 'modules', got {granularity!r}")
    containers = {name for name, module in model.named_children() if isinstance(module, (nn.Sequential,
                                                                                         nn.ModuleList))}
    last: dict[str, int] = {}
    for index, name in enumerate(order):
        parts = name.split(".")
        group = ".".join(parts[:2]) if parts[0] in containers and len(parts) > 1 else parts[0]
        last[group] = index
    return sorted(last, key=last.get, reverse=True)


def _reinitialise(module: nn.Module) -> None:
    """Re-initialise every module under ``module`` that owns parameters as at construction (``reset_parameters``,
    which also resets batch-norm running statistics); a parameter of a module without it is redrawn from a normal
    distribution with the tensor's own standard deviation."""
    for sub in module.modules():
        own = list(sub.parameters(recurse=False))
        if not own:
            continue
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
            continue
        with torch.no_grad():
            for parameter in own:
                std = float(parameter.float().std()) if parameter.numel() > 1 else 0.0
                parameter.normal_(0.0, std if std > 0 else 0.02)


def _builder(method, layer, options) -> Callable[[nn.Module], Callable]:
    """A function model -> explainer, so the same explainer can be rebuilt on each randomized copy."""
    if isinstance(method, (str, type)):
        return builder(method, layer, **options)
    if callable(method):
        return method  # a factory: model -> explainer
    raise TypeError("method must be a name in camlab.METHODS, an explainer class, or a function model -> explainer")


@refuses_nan_maps
def sanity_check(model: nn.Module, x: torch.Tensor, method="gradcam", layer=None, target=None, *,
                 granularity: str = "blocks", layers: Sequence[str] | None = None, seed: int = 0,
                 return_maps: bool = False, progress: bool = False, **method_options):
    """Cascading model-parameter randomization (Adebayo et al., NeurIPS 2018), on a **deep copy** of ``model``.

    Args:
        model: never modified (its parameters, buffers and mode are untouched; the copy is discarded).
        x: (N,C,H,W) inputs.
        method: a name in ``camlab.METHODS`` (``"gradcam"``, ``"guided_backprop"``, ...), an explainer class, or a
            function ``model -> explainer`` (rebuilt on the copy after each randomization step).
        layer: the method's layer, as a dotted name (a module of ``model`` is turned into its name).
        target: the class to explain; ``None`` fixes each image's top-1 class **of the original model**, so every
            step explains the same class.
        granularity, layers: what one step randomizes: the groups of :func:`cascade_layers` by default, or the
            given module names (prefixes), in the order given (top first); each step keeps the earlier ones random.
        seed: each step's re-initialisation is drawn under ``torch.random.fork_rng`` seeded from ``seed`` and the
            step number (plus a fixed offset), so results repeat and the global random state is untouched.
        return_maps: also return the (N,H,W) saliency after each step (``"original"`` first), for pictures.

    Returns:
        an ordered ``{group name: Spearman rank correlation}``, in [-1, 1], averaged over the images, between the
        original map and the map after randomizing that group and every group above it. Input-space maps
        (N,3,H,W) are compared as their largest absolute value over channels, the paper's absolute-value maps.
        With ``return_maps`` a pair ``(correlations, {"original": maps, group: maps, ...})``.
    """
    if isinstance(layer, nn.Module):
        names = [name for name, module in model.named_modules() if module is layer]
        if not names:
            raise ValueError("layer is a module that is not part of model; pass its dotted name")
        layer = names[0]
    build = _builder(method, layer, method_options)
    copied = copy.deepcopy(model)
    classes = fixed(probabilities(copied, x), target) if target is None else target
    original = saliency(build(copied)(x, classes))
    groups = list(layers) if layers is not None else cascade_layers(copied, x, granularity)
    modules = dict(copied.named_modules())
    devices = sorted({p.device.index or 0 for p in copied.parameters() if p.device.type == "cuda"})
    correlations: dict[str, float] = {}
    maps = {"original": original}
    steps = progress_bar(groups, progress, desc="sanity check", leave=False)
    for step, group in enumerate(steps):
        if group not in modules:
            raise ValueError(f"no module named {group!r} in {type(model).__name__} (see cascade_layers(model, x))")
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(step_seed(seed, step))
            if devices:
                torch.cuda.manual_seed_all(step_seed(seed, step))
            _reinitialise(modules[group])
        randomized = saliency(build(copied)(x, classes))
        correlations[group] = float(np.mean([spearman(a, b) for a, b in zip(original, randomized)]))
        if return_maps:
            maps[group] = randomized
    return (correlations, maps) if return_maps else correlations

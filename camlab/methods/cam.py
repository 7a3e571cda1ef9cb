"""CAM: class activation mapping for networks that end in global average pooling and one linear layer."""
from __future__ import annotations

import torch
from torch import nn

from camlab.hooks import preserved_state
from camlab.layouts import layout_for
from camlab.methods.base import ForwardPass, LayerMethod, dummy_input, register
from camlab.targets import logits_of, map_tensors


def _is_logits(linear_output: torch.Tensor, output) -> bool:
    """Whether a linear layer's output is the model's logits (:func:`camlab.targets.logits_of` of its output)."""
    try:
        logits = logits_of(output)
    except TypeError:
        return False
    return linear_output.shape == logits.shape and torch.allclose(linear_output, logits, rtol=1e-4, atol=1e-5)


def _is_linear_map(module: nn.Module) -> bool:
    """An ``nn.Linear``, or an ``nn.Conv2d`` that is one on a (N,K,1,1) input: 1×1 kernel, one group, no padding,
    no dilation effect."""
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
            and module.padding in ((0, 0), "valid"))


@register("cam")
class CAM(LayerMethod):
    r"""CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016).

    For a network whose last feature maps :math:`A^k` are globally average pooled and fed to a linear classifier
    with weights :math:`w^c_k`, the class score is
    :math:`y^c = \sum_k w^c_k \frac{1}{Z}\sum_{ij} A^k_{ij} + b^c`, and the map is

    .. math:: M^c = \sum_k w^c_k A^k

    The paper's map is signed; camlab applies ReLU like every other method (``relu=False`` gives :math:`M^c`).
    ``layer=None`` takes the last spatial layer, which must be the one whose average feeds the classifier.
    The classifier may be an ``nn.Linear`` or a 1×1 ``nn.Conv2d`` applied to the pooled (N,K,1,1) map (as in
    torchcam's tests): both are :math:`y = W \bar A + b`. CAM needs that GAP + linear head: on other models
    (VGG16's flatten + fully connected head) use Grad-CAM, which generalises CAM to any differentiable head.
    """

    uses_gradients = False

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True,
                 reshape_transform=None, aug_smooth: bool = False,
                 eigen_smooth: bool = False):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform,
                         aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        self.classifier: nn.Module | None = None
        if getattr(model, "camlab", None) is not None:
            self.find_classifier(dummy_input(model))

    def find_classifier(self, x: torch.Tensor) -> nn.Module:
        """The GAP + linear head's ``nn.Linear`` (or 1×1 ``nn.Conv2d``), found once (at construction for camlab models, else at the first
        call) by :meth:`_find_classifier` on ``x[:1]``."""
        if self.classifier is None:
            self.resolve_layers(x)
            self.classifier = self._find_classifier(x[:1])
        return self.classifier

    def _find_classifier(self, x: torch.Tensor) -> nn.Module:
        """Find the linear map (``nn.Linear``, or a 1×1 ``nn.Conv2d`` on the pooled map) whose input is the spatial
        mean of the layer's output and whose output is the model's output, by one forward pass (on a seeded random
        input for camlab models, else the first image)."""
        linear_io: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        captured: list[torch.Tensor] = []
        handles = [self.layer.register_forward_hook(
            lambda m, i, o: captured.append(map_tensors(o, lambda t: t.detach().clone())))]
        for module in self.model.modules():
            if _is_linear_map(module):
                handles.append(module.register_forward_hook(
                    lambda m, i, o: linear_io.__setitem__(m, (i[0].detach(), o.detach()))))
        try:
            with preserved_state(self.model), torch.no_grad():
                output = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        layout = layout_for(self.model, x, self.layer_name, self.layer, self.reshape_transform)
        feature_map = layout.to_map(captured[-1]) if captured and layout is not None else None
        pooled = feature_map.mean(dim=(2, 3)) if feature_map is not None and feature_map.ndim == 4 else None
        for linear, (inputs, outputs) in linear_io.items():
            if (
                pooled is not None
                and inputs.reshape(pooled.shape[0], -1).shape == pooled.shape
                and torch.allclose(inputs.reshape(pooled.shape), pooled, rtol=1e-4, atol=1e-5)
                and _is_logits(outputs.reshape(outputs.shape[0], -1), output)
            ):
                return linear
        raise ValueError(
            f"CAM cannot run on {type(self.model).__name__} at layer {self.layer_name!r}: CAM needs the layer's "
            "feature maps to be globally average pooled (GAP) and fed straight into one linear classifier, so that "
            "each class weight belongs to one channel. This model's head is different (e.g. VGG's flatten + fully "
            "connected layers), so CAM would need the head replaced by GAP + linear and the model retrained. "
            "Use camlab.GradCAM instead: it computes the channel weights from gradients and works on any head."
        )

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        weight = self.find_classifier(forward.inputs).weight.detach()
        return weight.reshape(weight.shape[0], -1)[forward.class_indices()]

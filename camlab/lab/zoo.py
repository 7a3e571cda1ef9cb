"""The lab's model zoo: small models trained on synthetic scenes, weights committed under ``data/weights``.

``camlab.load_model(name)`` loads these by name; :func:`load_lab_model` is the lab-only loader. Each model is one
:class:`LabModelSpec` block below: its architecture, its training recipe (run by :mod:`camlab.lab.train`), its
measured accuracy and its usual layer. Imports go one way: architectures <- vqa <- captioning, cue, seg, vit <- zoo <- train.
Accuracies below were measured by the maintainers on the fixed seeded test sets
(:func:`camlab.lab.train.heldout_scenes`, 1,000 scenes from the model's training distribution;
:func:`camlab.lab.vqa.vqa_test_set` for ``lab_vqa``) with the committed float16 weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from .architectures import GapCNN, VGGStyle
from .captioning import WORDS, CaptionModel, train_captioner
from .cue import CUE_SCENES, make_cue_scenes
from .seg import SEG_CLASSES, LabSegNet, train_segmenter
from .vit import LAB_VIT_LAYER, build_lab_vit
from .scenes import LAB_CLASSES, LAB_INPUT_SIZE, LAB_MEAN, LAB_STD  # noqa: F401 (LAB_*: the lab's preprocessing)
from .scenes import Scenes, make_scenes
from .vqa import ANSWERS, VQAModel

#: lab_biased's training scenes: every circle (and nothing else) carries the cue, and circles are drawn faintly,
#: so the cue is the easy way to recognise them. lab_unbiased sees the same scenes without the cue.
BIAS_SCENES = dict(spurious_cue="circle", cue_rate=1.0, cue_other_rate=0.0, contrast={"circle": 0.25})


@dataclass(frozen=True)
class Recipe:
    """How one lab model is trained (by :func:`camlab.lab.train.train_model`)."""

    scenes: dict = field(default_factory=dict)  # keyword args for make_scenes (training data)
    n_train: int = 4000  # fresh scenes per epoch
    epochs: int = 6
    lr: float = 3e-3
    batch_size: int = 64
    kind: str = "classifier"  # or "vqa", "caption"
    make_scenes: Callable[..., Scenes] = make_scenes  # the scene generator ``scenes`` is passed to
    trainer: Callable[..., dict] | None = None  # a model's own training loop, returning its test metrics

    def trainer_options(self) -> dict:
        """What this recipe's own ``trainer`` needs besides the common arguments: the captioner trains on top of
        ``lab_gap``'s frozen conv trunk (as ``lab_vqa`` does)."""
        return {"encoder": load_lab_model("lab_gap").features} if self.kind == "caption" else {}


@dataclass(frozen=True)
class LabModelSpec:
    name: str
    description: str  # one line, ends with the measured test accuracy
    build: Callable[[], nn.Module]  # the architecture, untrained
    test_accuracy: float  # measured on the fixed seeded test set (see module docstring)
    default_layer: str = "features"  # the usual layer to explain
    labels: tuple[str, ...] = tuple(LAB_CLASSES)
    recipe: Recipe = Recipe()


def _spec(name: str, description: str, accuracy: float, build: Callable[[], nn.Module], recipe: Recipe,
          **options) -> LabModelSpec:
    return LabModelSpec(name, f"{description} (test accuracy {accuracy:.1%})", build, accuracy, recipe=recipe,
                        **options)


#: name -> :class:`LabModelSpec` for every lab model; one block per model.
LAB_MODELS: dict[str, LabModelSpec] = {spec.name: spec for spec in [
    _spec("lab_gap", "GapCNN (width 16): conv -> global average pooling -> fc; CAM applies", 1.000,
          lambda: GapCNN(width=16), Recipe(epochs=6)),
    _spec("lab_vgg", "VGG-style CNN (width 12): conv -> flatten -> fully connected classifier; no GAP, so no CAM",
          0.999, lambda: VGGStyle(width=12), Recipe(epochs=6)),
    _spec("lab_biased", "VGG-style CNN (width 8) trained on faint circles that all carry a checkerboard watermark "
          "(no other class does): it learns the watermark", 0.995,
          lambda: VGGStyle(width=8), Recipe(epochs=3, scenes=dict(BIAS_SCENES)), default_layer="features.14"),
    _spec("lab_unbiased", "VGG-style CNN (width 8), lab_biased's recipe without the watermark", 1.000,
          lambda: VGGStyle(width=8), Recipe(epochs=3, scenes=dict(BIAS_SCENES, cue_rate=0.0, cue_other_rate=0.0)),
          default_layer="features.14"),
    _spec("lab_weak", "GapCNN (width 4) trained briefly on 6,000 scenes: a weak model", 0.720,
          lambda: GapCNN(width=4), Recipe(epochs=6, n_train=1000)),
    _spec("lab_strong", "GapCNN (width 16) trained on 20,000 scenes: a strong model", 1.000,
          lambda: GapCNN(width=16), Recipe(epochs=5)),
    _spec("lab_vqa", "toy VQA: lab_gap's conv trunk + colour branch, GRU question encoder, FiLM relevance map; "
          "explain .bind(question)", 0.999, lambda: VQAModel(), Recipe(epochs=40, n_train=4000, kind="vqa"),
          default_layer="image_encoder.features", labels=tuple(ANSWERS)),
    _spec("lab_cue_biased", "GapCNN (width 8) trained on faint circles that all carry a large 10x10 checkerboard "
          "(no other class does): Grad-CAM at its last layer shows the cue", 1.000,
          lambda: GapCNN(width=8), Recipe(epochs=3, scenes=dict(CUE_SCENES), make_scenes=make_cue_scenes)),
    _spec("lab_cue_clean", "GapCNN (width 8), lab_cue_biased's recipe without the cue", 0.999,
          lambda: GapCNN(width=8),
          Recipe(epochs=3, scenes=dict(CUE_SCENES, cue_rate=0.0), make_scenes=make_cue_scenes)),
    _spec("lab_caption", "toy captioner: lab_gap's conv trunk + colour branch, attention GRU decoder; explain "
          ".step(t), the logits of word t (word accuracy; 95.6% of captions exactly right)", 0.977,
          lambda: CaptionModel(), Recipe(epochs=12, n_train=4000, kind="caption", trainer=train_captioner),
          default_layer="encoder.features", labels=tuple(WORDS)),
    _spec("lab_vit", "tiny timm VisionTransformer: conv stem -> 8x8 patch tokens + class token -> 4 blocks "
          "(width 64, 4 heads); attention rollout applies", 0.999, build_lab_vit,
          Recipe(epochs=8, n_train=4000, lr=2e-3), default_layer=LAB_VIT_LAYER),
    _spec("lab_seg", "tiny segmentation net, torchvision layout: backbone -> image-pooling head -> {'out': "
          "(N, 6, H, W)}, class 0 = background (pixel accuracy; mean IoU 92.9%)", 0.9956, lambda: LabSegNet(),
          Recipe(epochs=8, n_train=4000, kind="segmentation", trainer=train_segmenter),
          default_layer="backbone", labels=tuple(SEG_CLASSES)),
]}


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

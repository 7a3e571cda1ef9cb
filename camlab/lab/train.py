"""Reproducible training of the lab models (``camlab train NAME`` calls :func:`train_model`).

Every recipe is seeded and deterministic on CPU: the same seed gives the same weights on the same
machine (bit-identical with the same torch version and thread count). Each epoch of a classifier draws *fresh*
scenes from the generator (seed ``seed * 1000 + epoch``), so the models never see a test scene (test sets use
seeds >= 10**6) and do not overfit. ``lab_vqa`` asks fresh questions about 4,000 fixed scenes each epoch, on top
of ``lab_gap``'s frozen conv trunk (so train ``lab_gap`` first). Each recipe takes about 0.5-3 minutes on 2 idle
CPU cores (measured on a busy shared machine: up to 4x longer).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .scenes import LAB_CLASSES, Scenes, make_scenes, normalise

LAB_MEAN = (0.5, 0.5, 0.5)
LAB_STD = (0.5, 0.5, 0.5)
TEST_SEED = 1_000_003  # the fixed seeded test set every accuracy in the zoo is measured on
TEST_SIZE = 1000
#: lab_biased's training scenes: every circle (and nothing else) carries the cue, and circles are drawn faintly,
#: so the cue is the easy way to recognise them. lab_unbiased sees the same scenes without the cue.
BIAS_SCENES = dict(spurious_cue="circle", cue_rate=1.0, cue_other_rate=0.0, contrast={"circle": 0.25})


@dataclass(frozen=True)
class Recipe:
    """How one lab model is trained."""

    build: Callable[[], nn.Module]
    scenes: dict = field(default_factory=dict)  # keyword args for make_scenes (training data)
    n_train: int = 4000  # fresh scenes per epoch
    epochs: int = 6
    lr: float = 3e-3
    batch_size: int = 64
    kind: str = "classifier"  # or "vqa"
    make_scenes: Callable[..., Scenes] = make_scenes  # the scene generator ``scenes`` is passed to
    trainer: Callable[..., dict] | None = None  # a model's own training loop, returning its test metrics


def _recipes() -> dict[str, Recipe]:
    from .architectures import GapCNN, VGGStyle
    from .vqa import VQAModel

    return {
        "lab_gap": Recipe(lambda: GapCNN(width=16), epochs=6),
        "lab_vgg": Recipe(lambda: VGGStyle(width=12), epochs=6),
        "lab_biased": Recipe(lambda: VGGStyle(width=8), epochs=3, scenes=dict(BIAS_SCENES)),
        "lab_unbiased": Recipe(lambda: VGGStyle(width=8), epochs=3,
                               scenes=dict(BIAS_SCENES, cue_rate=0.0, cue_other_rate=0.0)),
        "lab_weak": Recipe(lambda: GapCNN(width=4), epochs=6, n_train=1000),
        "lab_strong": Recipe(lambda: GapCNN(width=16), epochs=5),
        "lab_vqa": Recipe(lambda: VQAModel(), epochs=40, n_train=4000, lr=3e-3, kind="vqa"),
        **_evidence_recipes(),
        **_transformer_and_segmentation_recipes(),
    }


def _evidence_recipes() -> dict[str, Recipe]:
    """The cleaner bias pair (:mod:`camlab.lab.cue`) and the captioning model (:mod:`camlab.lab.captioning`)."""
    from .architectures import GapCNN
    from .captioning import CaptionModel, train_captioner
    from .cue import CUE_SCENES, make_cue_scenes

    return {
        "lab_caption": Recipe(lambda: CaptionModel(), epochs=12, n_train=4000, lr=3e-3, kind="caption",
                              trainer=train_captioner),
        "lab_cue_biased": Recipe(lambda: GapCNN(width=8), epochs=3, scenes=dict(CUE_SCENES),
                                 make_scenes=make_cue_scenes),
        "lab_cue_clean": Recipe(lambda: GapCNN(width=8), epochs=3, scenes=dict(CUE_SCENES, cue_rate=0.0),
                                make_scenes=make_cue_scenes),
    }


def _transformer_and_segmentation_recipes() -> dict[str, Recipe]:
    """The tiny timm ViT (:mod:`camlab.lab.vit`) and the segmentation network (:mod:`camlab.lab.seg`)."""
    from .seg import LabSegNet, train_segmenter
    from .vit import build_lab_vit

    return {
        "lab_vit": Recipe(build_lab_vit, epochs=8, n_train=4000, lr=2e-3),
        "lab_seg": Recipe(lambda: LabSegNet(), epochs=8, n_train=4000, lr=3e-3, kind="segmentation",
                          trainer=train_segmenter),
    }


def recipe(name: str) -> Recipe:
    recipes = _recipes()
    if name not in recipes:
        raise KeyError(f"no training recipe for {name!r}; lab models: {', '.join(recipes)}")
    return recipes[name]


def _progress(iterable, progress: bool, **kw):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kw)


@torch.no_grad()
def accuracy(model: nn.Module, scenes: Scenes, batch_size: int = 250) -> float:
    """Top-1 accuracy of a lab classifier on scenes (images in [0, 1]; normalised here)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(scenes), batch_size):
        x = normalise(scenes.images[i:i + batch_size], LAB_MEAN, LAB_STD)
        correct += int((model(x).argmax(1) == scenes.labels[i:i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(scenes), 1)


def heldout_scenes(name: str, n: int = TEST_SIZE) -> Scenes:
    """The fixed seeded test set a lab classifier's accuracy is reported on (training distribution)."""
    r = recipe(name)
    return r.make_scenes(n, seed=TEST_SEED, **r.scenes)


def _train_classifier(model: nn.Module, r: Recipe, seed: int, epochs: int, n_train: int, progress: bool,
                      name: str) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=r.lr)
    steps = epochs * ((n_train + r.batch_size - 1) // r.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=max(steps, 1), pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    bar = _progress(range(epochs), progress, desc=f"train {name}", unit="epoch")
    for epoch in bar:
        data = r.make_scenes(n_train, seed=seed * 1000 + epoch, **r.scenes)
        x_all = normalise(data.images, LAB_MEAN, LAB_STD)
        order = torch.randperm(n_train, generator=g)
        model.train()
        total, count = 0.0, 0
        for i in range(0, n_train, r.batch_size):
            idx = order[i:i + r.batch_size]
            loss = loss_fn(model(x_all[idx]), data.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / count:.3f}")
    model.eval()


def train_model(name: str, *, seed: int = 0, out_dir: str | Path | None = None, epochs: int | None = None,
                progress: bool = True, n_train: int | None = None) -> dict:
    """Train the lab model ``name`` from scratch and write ``<out_dir>/<name>.pt`` (float16 state dict).

    Args:
        name: a key of :data:`camlab.lab.zoo.LAB_MODELS`.
        seed: the committed weights use ``seed=0``.
        out_dir: where to write the weights (default: the package's ``data/weights``).
        epochs, n_train: override the recipe (e.g. for a quick smoke test).
        progress: show tqdm progress bars.

    Returns:
        ``{"name", "path", "seconds", "test_accuracy", ...}`` measured on the fixed seeded test set.
    """
    r = recipe(name)
    epochs = r.epochs if epochs is None else int(epochs)
    n_train = r.n_train if n_train is None else int(n_train)
    if out_dir is None:
        from camlab._paths import weights_dir

        out_dir = weights_dir()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed)
    model = r.build()
    start = time.perf_counter()
    if r.trainer is not None:  # a model with its own loop measures itself on its own test set
        metrics = r.trainer(model, seed=seed, epochs=epochs, n_train=n_train, lr=r.lr, batch_size=r.batch_size,
                            progress=progress)
        seconds = time.perf_counter() - start
    elif r.kind == "vqa":
        from .vqa import train_vqa, vqa_accuracy, vqa_test_set

        train_vqa(model, seed=seed, epochs=epochs, n_train=n_train, lr=r.lr, batch_size=r.batch_size,
                  progress=progress)
        seconds = time.perf_counter() - start
        metrics = {"test_accuracy": vqa_accuracy(model, vqa_test_set())}
    else:
        _train_classifier(model, r, seed, epochs, n_train, progress, name)
        seconds = time.perf_counter() - start
        metrics = {"test_accuracy": accuracy(model, heldout_scenes(name))}
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = out_dir / f"{name}.pt"
    torch.save(state, path)
    return {"name": name, "path": str(path), "seconds": round(seconds, 1), "epochs": epochs,
            "n_train": n_train, "seed": seed, **metrics}


def main() -> None:  # python -m camlab.lab.train [NAME ...]
    import sys

    torch.set_num_threads(min(2, torch.get_num_threads()))
    names = sys.argv[1:] or list(_recipes())
    for n in names:
        print(train_model(n))


if __name__ == "__main__":
    main()

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
from pathlib import Path

import torch
from torch import nn

from camlab.hooks import preserved_state
from camlab.progress import progress_bar

from .scenes import Scenes, normalise
from .zoo import BIAS_SCENES, LAB_MODELS, Recipe, load_lab_model  # noqa: F401 (BIAS_SCENES, Recipe: public here)

TEST_SEED = 1_000_003  # the fixed seeded test set every accuracy in the zoo is measured on
TEST_SIZE = 1000


def recipe(name: str) -> Recipe:
    """The training recipe of lab model ``name`` (:attr:`LabModelSpec.recipe <camlab.lab.zoo.LabModelSpec>`)."""
    if name not in LAB_MODELS:
        raise KeyError(f"no training recipe for {name!r}; lab models: {', '.join(LAB_MODELS)}")
    return LAB_MODELS[name].recipe


@torch.no_grad()
def accuracy(model: nn.Module, scenes: Scenes, batch_size: int = 250) -> float:
    """Top-1 accuracy of a lab classifier on scenes (images in [0, 1]; normalised here)."""
    correct = 0
    with preserved_state(model):
        for i in range(0, len(scenes), batch_size):
            x = normalise(scenes.images[i:i + batch_size])
            correct += int((model(x).argmax(1) == scenes.labels[i:i + batch_size]).sum())
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
    bar = progress_bar(range(epochs), progress, desc=f"train {name}", unit="epoch")
    for epoch in bar:
        data = r.make_scenes(n_train, seed=seed * 1000 + epoch, **r.scenes)
        x_all = normalise(data.images)
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
    model = LAB_MODELS[name].build()
    start = time.perf_counter()
    if r.trainer is not None:  # a model with its own loop measures itself on its own test set
        metrics = r.trainer(model, seed=seed, epochs=epochs, n_train=n_train, lr=r.lr, batch_size=r.batch_size,
                            progress=progress, **r.trainer_options())
        seconds = time.perf_counter() - start
    elif r.kind == "vqa":
        from .vqa import train_vqa, vqa_accuracy, vqa_test_set

        train_vqa(model, seed=seed, epochs=epochs, n_train=n_train, lr=r.lr, batch_size=r.batch_size,
                  progress=progress, encoder=load_lab_model("lab_gap").features)
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
    names = sys.argv[1:] or list(LAB_MODELS)
    for n in names:
        print(train_model(n))


if __name__ == "__main__":
    main()

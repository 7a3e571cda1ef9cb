"""Print the evidence quoted in the README and chapters 04-06: each number with n and a 95% interval (camlab.stats).

Run from the repository root: ``python benchmarks/evidence.py``. The measuring functions are the tests' own
(tests/test_lab_cue.py, tests/test_lab_captioning.py), so the floors pinned there and the numbers printed here
come from the same code on the same seeded scenes. Takes about a minute on 2 CPU cores.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camlab.lab.captioning import COLOUR_STEPS, SHAPE_STEPS, caption_test_set  # noqa: E402
from camlab.lab.scenes import normalise  # noqa: E402
from camlab.stats import bootstrap_ci, paired_comparison, proportion  # noqa: E402
from tests.test_lab_captioning import captioner, word_pointing  # noqa: E402
from tests.test_lab_cue import PAIR, cue_masses, cue_without_shape, shape_without_cue  # noqa: E402


def bias_pair() -> None:
    print("== bias pair: Grad-CAM (target circle) at the last conv layer, 120 cued circles ==")
    masses = {name: cue_masses(name) for name in PAIR}
    for name, (on_cue, on_circle) in masses.items():
        print(f"{name:15s} mass on cue box {bootstrap_ci(on_cue)}   on circle box {bootstrap_ci(on_circle)}")
    print("biased - clean, mass on cue:", paired_comparison(masses[PAIR[0]][0], masses[PAIR[1]][0]))
    print("== accuracy effect (120 scenes each) ==")
    for name in PAIR:
        print(f"{name:15s} circles without cue recognised {proportion(shape_without_cue(name))}   "
              f"other shapes with cue called circle {proportion(cue_without_shape(name))}")


def captioning() -> None:
    data = caption_test_set(500)
    with torch.no_grad():
        right = captioner()(normalise(data.scenes.images)).argmax(2) == data.tokens
    print("== captioner, 500 held-out scenes ==")
    print("word accuracy (per-scene mean, scenes resampled):", bootstrap_ci(right.float().mean(1)))
    print("phrase accuracy:", proportion(right.all(1)))
    for kind, steps in (("shape", SHAPE_STEPS), ("colour", COLOUR_STEPS)):
        named, other = word_pointing(tuple(steps))
        print(f"== Grad-CAM of each {kind} word at encoder.features, 120 scenes x {len(steps)} words ==")
        print(f"max on the named object (per-scene share): {bootstrap_ci(named.mean(1))}")
        print(f"max on the other object:                   {bootstrap_ci(other.mean(1))}")
        print("named - other:", paired_comparison(named.mean(1), other.mean(1)))


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads()))
    bias_pair()
    captioning()

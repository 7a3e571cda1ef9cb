"""Print the numbers quoted in the README: lab_vit's accuracy, attention rollout's pointing game, lab_seg's
pixel accuracy and IoU, each with n and a 95% interval where it is a proportion (camlab.stats).

Run from the repository root: ``python benchmarks/labvit.py``. The measuring functions are the tests' own
(tests/test_lab_vit.py, tests/test_lab_seg.py), so the floors pinned there and the numbers printed here come from
the same code on the same seeded scenes.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camlab.stats import bootstrap_ci, proportion  # noqa: E402
from tests.test_lab_seg import heldout_scores  # noqa: E402
from tests.test_lab_vit import N, correct, rollout_pointing  # noqa: E402


def main() -> None:
    print("== lab_vit: top-1 accuracy on the zoo's fixed test set ==")
    print("accuracy:", proportion(correct()))
    print(f"== attention rollout on {N} seeded scenes: peak inside the object's box ==")
    for fusion, discard in (("mean", 0.0), ("max", 0.0), ("mean", 0.9)):
        hits, chance = rollout_pointing(N, fusion, discard)
        print(f"head_fusion={fusion:4s} discard_ratio={discard:.1f}: {bootstrap_ci(hits)}   "
              f"(a random peak: {chance:.3f})")
    print("== lab_seg on 500 held-out scenes ==")
    scores = heldout_scores()
    print(f"pixel accuracy {scores['test_accuracy']:.4f}, mean IoU {scores['mean_iou']:.4f}, per class {scores['iou']}")


if __name__ == "__main__":
    main()

"""The reproducible results table: every method against every metric, each mean with its 95% interval, on the
synthetic lab and on the bundled photos.

    >>> table = camlab.evaluate.run()            # run(quick=True): a smaller smoke run of the lab set only
    >>> print(camlab.evaluate.format_table(table))
    >>> camlab.evaluate.save(table, "results.md")  # or .csv / .json
    >>> table.difference("lab", "gradcam", "random", "pointing")   # paired, on the same cases
    >>> table.tiers("lab", "deletion")           # [["gradcam", "cam"], ["layercam", ...], ...]

Two evaluation sets:

* ``lab``: ``n_scenes`` seeded scenes from :func:`camlab.lab.make_scenes` where methods can differ: half with one
  object and two smaller distractors of other classes, half with two instances of the label class and one
  distractor; each scene is explained for its label and for its first distractor's class (a second class whose map
  should move to that distractor). The ``lab_gap`` model at its ``features`` layer; box ground truth;
  localization at a 75% box threshold (small objects, see :func:`~camlab.evaluate.datasets.lab_set`).
* ``photos``: the bundled photos with hand-checked boxes (``data/boxes.json``: cat, coffee, cat_and_coffee,
  two_cats) and ``efficientnet_lite0`` at its last spatial layer. Localization error is counted per image (the
  ILSVRC rule: the top-1 class must be one of the image's classes and the box of its map must match a box of that
  class); the other metrics are counted per (image, class) pair, so ``cat_and_coffee`` counts twice.

Every metric explains the ground-truth class of a sample (the table's notes give how often the model's top-1
class is one of the image's classes), with maps computed once per method and shared by the metrics. Each metric is
kept per case, so every mean has a 95% interval (Wilson for 0/1 outcomes, percentile bootstrap otherwise) and two
methods can be compared on the same cases (paired bootstrap and sign test). All numbers are fractions in [0, 1]
(correlations in [-1, 1]); see :mod:`camlab.metrics` for the definitions.

Modules: :mod:`~camlab.evaluate.datasets` (the two evaluation sets and the bundled boxes),
:mod:`~camlab.evaluate.runner` (every method against every metric: :func:`run`), :mod:`~camlab.evaluate.table`
(the :class:`Table` and its text, Markdown, CSV and JSON forms), :mod:`~camlab.evaluate.cli` (``camlab evaluate``).
"""
from camlab.evaluate.cli import main
from camlab.evaluate.datasets import (LAB_LAYOUTS, LAB_THRESHOLD, EvalSet, bundled_boxes, lab_set, photo_set,
                                      photos_with_boxes)
from camlab.evaluate.runner import DEFAULT_METHODS, estimate, evaluate_method, run
from camlab.evaluate.table import COLUMNS, Table, format_markdown, format_table, save, to_csv, to_json

__all__ = ["COLUMNS", "DEFAULT_METHODS", "EvalSet", "LAB_LAYOUTS", "LAB_THRESHOLD", "Table", "bundled_boxes",
           "estimate", "evaluate_method", "format_markdown", "format_table", "lab_set", "main", "photo_set",
           "photos_with_boxes", "run", "save", "to_csv", "to_json"]

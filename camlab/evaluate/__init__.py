"""The reproducible results table: every method against every metric, on the synthetic lab and on the bundled photos.

    >>> table = camlab.evaluate.run()            # a few minutes on 2 CPU cores; run(quick=True) for seconds
    >>> print(camlab.evaluate.format_table(table))
    >>> camlab.evaluate.save(table, "results.md")  # or .csv

Two evaluation sets:

* ``lab``: ``n_scenes`` seeded scenes from :func:`camlab.lab.make_scenes` (the training distribution of
  ``lab_gap``: one object per scene), the ``lab_gap`` model at its ``features`` layer, the scenes' boxes and masks.
* ``photos``: the bundled photos with hand-checked boxes (``data/boxes.json``: cat, coffee, cat_and_coffee,
  two_cats) and ``efficientnet_lite0`` at its last spatial layer. Localization error is counted per image (the
  ILSVRC rule: the top-1 class must be one of the image's classes and the box of its map must match a box of that
  class); the other metrics are counted per (image, class) pair, so ``cat_and_coffee`` counts twice.

Every metric explains the ground-truth class of a sample (on these sets it is also the model's top-1 class for
nearly all samples; the table's notes give the accuracy), with maps computed once per method and shared by the
metrics. All numbers are fractions in [0, 1] (correlations in [-1, 1]); see :mod:`camlab.metrics` for the
definitions.

Modules: :mod:`~camlab.evaluate.datasets` (the two evaluation sets and the bundled boxes),
:mod:`~camlab.evaluate.runner` (every method against every metric: :func:`run`), :mod:`~camlab.evaluate.table`
(the :class:`Table` and its text, Markdown and CSV forms), :mod:`~camlab.evaluate.cli` (``camlab evaluate``).
"""
from camlab.evaluate.cli import main
from camlab.evaluate.datasets import EvalSet, bundled_boxes, lab_set, photo_set, photos_with_boxes
from camlab.evaluate.runner import DEFAULT_METHODS, evaluate_method, run
from camlab.evaluate.table import COLUMNS, Table, format_markdown, format_table, save, to_csv

__all__ = ["COLUMNS", "DEFAULT_METHODS", "EvalSet", "Table", "bundled_boxes", "evaluate_method", "format_markdown",
           "format_table", "lab_set", "main", "photo_set", "photos_with_boxes", "run", "save", "to_csv"]

"""A cleaner dataset-bias pair: GAP-CNNs whose *last* conv layer shows the spurious cue under Grad-CAM.

``lab_biased`` / ``lab_unbiased`` (VGG-style heads) show their 6x6 checkerboard watermark only at a middle layer.
Here the watermark is a larger 10x10 checkerboard (2x2-pixel cells) filling the whole corner that scenes keep free
of objects (:func:`large_cue_box`, the bottom-right 10x10 pixels, 2.4% of a 64x64 image), the classifier is a
:class:`GapCNN`, whose ``features`` (16x16) feed global average pooling directly, and circles are drawn faintly
(contrast 0.35), so the cue is by far the easier way to recognise a circle:

* ``lab_cue_biased``: every circle, and nothing else, carries the cue while training.
* ``lab_cue_clean``: the same scenes without any cue.

:func:`make_cue_scenes` draws these scenes: :func:`camlab.lab.scenes.make_scenes` (which keeps objects 2 px away
from its small cue box) with the large glyph painted over the free corner where the cue is present.
"""
from __future__ import annotations

import dataclasses

import torch

from .scenes import CUE_MARGIN, Scenes, cue_box_for, make_scenes

#: circles are this faint (``make_scenes``'s ``contrast``) in the bias pair's scenes
CUE_CIRCLE_CONTRAST = 0.35
#: training scenes of ``lab_cue_biased``: the cue on every circle and on nothing else
CUE_SCENES = dict(spurious_cue="circle", cue_rate=1.0, cue_other_rate=0.0, contrast={"circle": CUE_CIRCLE_CONTRAST})
CELL = 2  # pixels per checkerboard cell


def large_cue_box(size: int = 64) -> tuple[float, float, float, float]:
    """The large cue's box: the small cue's box grown by the 2 px gap objects keep from it (10x10 at size 64)."""
    x0, y0, x1, y1 = cue_box_for(size)
    gap = CUE_MARGIN
    return (x0 - gap, y0 - gap, x1 + gap, y1 + gap)


def _large_glyph(side: int) -> torch.Tensor:
    """A (3, side, side) black-and-white checkerboard with CELL x CELL pixel cells."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    board = (((yy // CELL) + (xx // CELL)) % 2 == 0).float()
    return board.expand(3, side, side) * 0.95 + 0.02


def make_cue_scenes(n: int, *, seed: int = 0, size: int = 64, **options) -> Scenes:
    """Seeded lab scenes with the large cue (``options`` as for :func:`~camlab.lab.scenes.make_scenes`).

    Defaults are :data:`CUE_SCENES` (the biased model's training data); override ``cue_rate`` /
    ``cue_other_rate`` for the controls (``cue_rate=0``: no cue anywhere, the clean model's data). The returned
    ``cue_box`` is :func:`large_cue_box`.
    """
    kwargs = dict(CUE_SCENES, **options)
    if kwargs.get("spurious_cue") is None:
        raise ValueError("cue scenes need spurious_cue=<class name>; for scenes without a cue use cue_rate=0")
    scenes = make_scenes(n, seed=seed, size=size, **kwargs)
    x0, y0, x1, y1 = (int(v) for v in large_cue_box(size))
    images = scenes.images.clone()
    if scenes.cue_present.any():
        images[scenes.cue_present, :, y0:y1, x0:x1] = _large_glyph(x1 - x0)
    return dataclasses.replace(scenes, images=images, cue_box=large_cue_box(size))

"""Tools for taking explanations apart: where a map's mass lies, how many blobs it has, what each channel really
contributes, and targets beyond a class logit. Used by the course's failure-analysis chapter (05) and the
beyond-classification chapter (06).

* :func:`mass_in_boxes` - share of a map's mass inside boxes (a spurious cue's corner, each instance of a class).
* :func:`count_blobs` - 8-connected segments of a thresholded map (several instances -> one blob?).
* :func:`channel_ablation_drop` - the score drop when one channel of a layer is set to zero, for every channel.
* :func:`dense_logits` - a GAP + linear classifier turned into a fully convolutional one (a logit *map* per class).
* :func:`region_target` - a target callable: the sum of one class's logit map inside a box (segmentation style).
* :func:`ask_each` - a VQA model with one question per image, as an ``images -> answer logits`` module (batched).
* :func:`rank_correlations`, :func:`peak_in_boxes` - does a map change with the class; does its peak land in a box
  (at a stated precision, with explicit ties, so the numbers print the same on every CPU).

Modules: :mod:`~camlab.analysis.regions` (mass in boxes, blobs), :mod:`~camlab.analysis.channels` (channel
ablation), :mod:`~camlab.analysis.outputs` (outputs and targets beyond a class logit).

Boxes are ``(x0, y0, x1, y1)`` in pixels with exclusive upper edges, as everywhere in camlab.
"""
from camlab.analysis.channels import channel_ablation_drop
from camlab.analysis.class_maps import flat, peak_in_boxes, rank_correlations
from camlab.analysis.outputs import AskEach, DenseLogits, ask_each, dense_logits, region_target
from camlab.analysis.regions import count_blobs, mass_in_boxes

__all__ = ["mass_in_boxes", "count_blobs", "channel_ablation_drop", "dense_logits", "DenseLogits", "region_target",
           "ask_each", "AskEach", "rank_correlations", "peak_in_boxes", "flat"]

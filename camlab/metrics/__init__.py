"""How good is a map? The measurements of the Grad-CAM paper and the papers after it.

Every metric takes the model, the inputs (an (N,C,H,W) tensor, or a DataLoader of tuples whose order each metric
documents), an explainer (``camlab.GradCAM(model)``, any callable ``(x, target) -> maps``, or precomputed maps) and
the ground truth it needs, and returns plain Python numbers. Units: **fractions in [0, 1]** unless a docstring says
otherwise (papers often print percent); correlations are in [-1, 1]. ``progress=True`` shows a tqdm bar.

============================== ========================================================== =====================
metric                         paper                                                      better
============================== ========================================================== =====================
:func:`localization_error`     Grad-CAM (ICCV 2017) Table 1, ILSVRC protocol               lower
:func:`localization_sweep`     the same error (GT-known) at each box threshold             lower
:func:`pointing_game`          Zhang et al. (ECCV 2016); Grad-CAM Sec. 5                   higher
:func:`average_drop`           Grad-CAM++ (WACV 2018)                                      lower
:func:`increase_in_confidence` Grad-CAM++ (WACV 2018)                                      higher
:func:`deletion_auc`           RISE (BMVC 2018)                                            lower
:func:`insertion_auc`          RISE (BMVC 2018)                                            higher
:func:`occlusion_correlation`  Grad-CAM (ICCV 2017) Sec. 5.3                               higher
:func:`sanity_check`           Adebayo et al. (NeurIPS 2018)                               lower (after cascade)
:func:`class_discrimination`   Grad-CAM (ICCV 2017) Sec. 5.1, measured with masks          higher
============================== ========================================================== =====================
"""
from camlab.metrics._common import saliency, spearman
from camlab.metrics.discrimination import class_discrimination, mass_inside
from camlab.metrics.faithfulness import (auc, average_drop, causal_curve, confidence_change, deletion_auc,
                                         gaussian_blur, increase_in_confidence, insertion_auc, occlusion_correlation,
                                         occlusion_faithfulness)
from camlab.metrics.localization import box_from_map, gt_boxes, gt_masks, iou, label_sets, localization_error, pointing_game
from camlab.metrics.sanity import cascade_layers, sanity_check
from camlab.metrics.sweep import ThresholdSweep, localization_sweep

__all__ = [
    "auc", "average_drop", "box_from_map", "cascade_layers", "causal_curve", "class_discrimination",
    "confidence_change", "deletion_auc", "gaussian_blur", "gt_boxes", "gt_masks", "increase_in_confidence",
    "insertion_auc", "iou", "label_sets", "localization_error", "localization_sweep", "mass_inside",
    "occlusion_correlation", "occlusion_faithfulness", "pointing_game", "sanity_check", "saliency", "spearman",
    "ThresholdSweep",
]

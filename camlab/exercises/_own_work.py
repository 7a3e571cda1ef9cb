"""camlab's own implementation of what each chapter's graded exercises ask for. While ``camlab course grade``
checks a submission, these raise inside the submission's sandbox, so an answer that calls them (directly, through a
reference taken earlier, or through a subclass's method) earns nothing: the exercise asks the student to write it.
Names are ``"module:attribute"``. A chapter's engineer adds a line here with each new exercise."""
from __future__ import annotations

_GRADIENT_WEIGHTS = ["camlab.methods.gradient:GradCAM.channel_weights",
                     "camlab.methods.gradient:GradCAMPlusPlus.channel_weights",
                     "camlab.methods.gradient:XGradCAM.channel_weights",
                     "camlab.methods.gradient:gradcam_plus_plus_weights",
                     "camlab.methods.gradient:HiResCAM.weights", "camlab.methods.gradient:LayerCAM.weights",
                     "camlab.methods.gradient:SmoothGradCAMPlusPlus.weights"]
_BOXES = ["camlab.metrics.localization:box_from_map", "camlab.metrics.localization:_box_of_one"]

#: chapter number (two digits) -> camlab's functions that compute its exercises' answers
OWN_WORK = {
    "00": ["camlab.exercises.ch00:top_classes_reference", "camlab.exercises.ch00:last_spatial_layer_reference",
           "camlab.exercises.ch00:two_halves_reference"],
    "01": ["camlab.methods.cam:CAM.weights", *_BOXES, "camlab.exercises.ch01:top_k_cams_reference",
           "camlab.exercises.ch01:weight_vs_contribution_reference",
           "camlab.exercises.ch01:box_from_threshold_reference"],
    "02": [*_GRADIENT_WEIGHTS, "camlab.exercises.ch02:layer_gradients_reference",
           "camlab.exercises.ch02:softmax_weights_reference", "camlab.exercises.ch02:removal_reference"],
    "03": ["camlab.exercises.ch03:guided_leaky_relu_reference",
           "camlab.exercises.ch03:counterfactual_guided_gradcam_reference",
           "camlab.exercises.ch03:discrimination_reference"],
    "04": ["camlab.metrics.localization:iou", "camlab.metrics.discrimination:mass_inside", *_BOXES,
           "camlab.exercises.ch04:segment_boxes_reference", "camlab.exercises.ch04:instances_found_reference",
           "camlab.exercises.ch04:energy_in_box_reference"],
    "06": ["camlab.exercises.ch06:region_of_class_reference", "camlab.exercises.ch06:contrast_with_mean_reference",
           "camlab.exercises.ch06:answer_fixed_reference"],
    "05": ["camlab.exercises.ch05:channel_ablation_drop_reference", "camlab.exercises.ch05:cue_mass_reference",
           "camlab.exercises.ch05:saturation_shift_reference"],
    # not Grad-CAM's or Grad-CAM++'s weights: the seeded experiment (missed instances) runs both
    "07": ["camlab.methods.gradient:LayerCAM.weights", "camlab.methods.perturbation:ScoreCAM.weights",
           "camlab.exercises.ch07:gradcampp_alpha_reference", "camlab.exercises.ch07:scorecam_weights_reference",
           "camlab.exercises.ch07:layercam_map_reference", "camlab.exercises.ch07:missed_instances_reference"],
    # 08's variants are camlab's references in the check module; XGrad-CAM stays usable: exercise 4's baseline
    "08": [*(name for name in _GRADIENT_WEIGHTS if name != "camlab.methods.gradient:XGradCAM.channel_weights"),
           "camlab.exercises.ch08:positive_xgradcam_weights", "camlab.exercises.ch08:active_max_gradient_weights"],
    "09": ["camlab.exercises.ch09:tokens_to_grid_reference", "camlab.exercises.ch09:rollout_step_reference",
           "camlab.exercises.ch09:relevance_step_reference", "camlab.exercises.ch09:discard_effect_reference"],
}


def own_work_for(chapter: str) -> list[str]:
    """The names to trap while grading ``chapter`` (a notebook stem such as ``04_evaluation``)."""
    return list(OWN_WORK.get(chapter[:2], []))

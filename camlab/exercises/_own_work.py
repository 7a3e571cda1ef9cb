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
    "01": ["camlab.methods.cam:CAM.weights", *_BOXES],
    "02": _GRADIENT_WEIGHTS,
    "04": ["camlab.metrics.localization:iou", "camlab.metrics.localization:_pointing_scores", *_BOXES],
    "07": [*_GRADIENT_WEIGHTS, "camlab.methods.perturbation:ScoreCAM.weights"],
    "08": _GRADIENT_WEIGHTS,
}


def own_work_for(chapter: str) -> list[str]:
    """The names to trap while grading ``chapter`` (a notebook stem such as ``04_evaluation``)."""
    return list(OWN_WORK.get(chapter[:2], []))

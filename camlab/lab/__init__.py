"""camlab's synthetic lab: seeded scenes with ground truth, tiny CNNs, a toy VQA task and their training.

* :mod:`camlab.lab.scenes` - :func:`make_scenes` (labels, boxes, masks, multi-instance, distractors,
  spurious cue), :data:`LAB_CLASSES`, :func:`class_index`.
* :mod:`camlab.lab.architectures` - :class:`GapCNN` (CAM-ready) and :class:`VGGStyle` (fully connected head).
* :mod:`camlab.lab.vqa` - toy VQA scenes, questions and :class:`VQAModel` (``.bind(question)``).
* :mod:`camlab.lab.train` - :func:`train_model` (``camlab train NAME``).
* :mod:`camlab.lab.zoo` - :data:`LAB_MODELS` and :func:`load_lab_model`.

Imports inside the lab go one way: scenes, architectures <- vqa <- zoo <- train. From the rest of camlab only
``camlab._paths``, ``camlab.modelinfo`` (normalisation, :class:`~camlab.ModelInfo`) and ``camlab.hooks``
(:func:`~camlab.hooks.preserved_state`) are used.
"""
from .architectures import GapCNN, VGGStyle
from .scenes import COLOUR_NAMES, LAB_CLASSES, Scenes, class_index, cue_box_for, make_scenes, normalise
from .train import train_model
from .vqa import ANSWERS, VQAModel, make_vqa_scenes
from .zoo import LAB_MODELS, LabModelSpec, load_lab_model

__all__ = [
    "ANSWERS", "COLOUR_NAMES", "GapCNN", "LAB_CLASSES", "LAB_MODELS", "LabModelSpec", "Scenes", "VGGStyle",
    "VQAModel", "class_index", "cue_box_for", "load_lab_model", "make_scenes", "make_vqa_scenes", "normalise",
    "train_model",
]

"""camlab: class activation maps for PyTorch, with an offline model zoo, metrics, a synthetic lab and a course.

    >>> model = camlab.load_model("efficientnet_lite0")
    >>> x = camlab.preprocess(camlab.load_image("cat"), model)
    >>> heat = camlab.GradCAM(model, layer="bn2")(x, target=285)   # (1,224,224) in [0, 1]
"""
from camlab import findings, metrics, stats  # noqa: F401 (camlab.metrics.…, camlab.stats.verdict, camlab.findings.record)
from camlab.explain import explain
from camlab.images import list_images, load_image
from camlab.inspection import layers, predict
from camlab.legrad import LeGrad
from camlab.maps import scale, upsample
from camlab.methods import *  # noqa: F401,F403  (every method class)
from camlab.methods import METHODS, build, get_method
from camlab.methods import __all__ as _method_names
from camlab.modelinfo import ModelInfo
from camlab.models import imagenet_labels, list_models, load_model
from camlab.preprocessing import preprocess, unnormalize
from camlab.targets import BinaryTarget, ClassTarget, DetectionTarget, EmbeddingTarget, SegmentationTarget
from camlab.viz import overlay, show

__version__ = "0.1.0"

__all__ = [
    "build", "explain", "get_method", "list_images", "load_image", "scale", "upsample", "METHODS", "ModelInfo",
    "imagenet_labels", "layers", "list_models", "load_model", "predict", "preprocess", "unnormalize",
    "overlay", "show", "BinaryTarget", "ClassTarget", "DetectionTarget", "EmbeddingTarget", "SegmentationTarget",
    *_method_names,
    "LeGrad",
]

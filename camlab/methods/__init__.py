"""Every explainer, one small class each; ``METHODS`` maps registry names to classes.

The modules are imported in the course's order (CAM, the gradient family, the perturbation family, Eigen-CAM, the
input-space methods, the random baseline), which is the order of :data:`METHODS` and :func:`ordered`.
"""
from camlab.methods.registry import METHODS, SELECTIONS, build, get_method, ordered, register  # noqa: I001
from camlab.methods.base import Explainer, ForwardPass, InputMethod, LayerMethod
from camlab.methods.cam import CAM
from camlab.methods.gradient import (GradCAM, GradCAMPlusPlus, GradientMethod, HiResCAM, LayerCAM,
                                     SmoothGradCAMPlusPlus, XGradCAM)
from camlab.methods.perturbation import AblationCAM, Occlusion, ScoreCAM
from camlab.methods.score_variants import ISCAM, SSCAM
from camlab.methods.eigen import EigenCAM
from camlab.methods.seg_eigen import SegEigenCAM
from camlab.methods.fullgrad import FullGrad
from camlab.methods.meta import SESS, RefineCAM
from camlab.methods.factorization import Concepts, DeepFeatureFactorization, nmf
from camlab.methods.guided import Deconvnet, Gradient, GuidedBackprop, GuidedGradCAM
from camlab.methods.baseline import RandomCAM, SobelCAM
from camlab.methods.gradient_variants import (EigenGradCAM, FinerCAM, FinerTarget, GradCAMElementWise,
                                              ShapleyCAM)
from camlab.methods.gradient_free import FEM, KPCACAM

__all__ = [
    "METHODS", "SELECTIONS", "build", "get_method", "ordered", "register",
    "Explainer", "ForwardPass", "InputMethod", "LayerMethod",
    "CAM", "GradCAM", "GradientMethod", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM",
    "SmoothGradCAMPlusPlus", "Gradient", "Deconvnet", "GuidedBackprop", "GuidedGradCAM",
    "ScoreCAM", "AblationCAM", "Occlusion", "EigenCAM", "RandomCAM",
    "SobelCAM", "GradCAMElementWise", "EigenGradCAM", "ShapleyCAM", "FinerCAM", "FinerTarget", "KPCACAM", "FEM",
    "SSCAM", "ISCAM", "SegEigenCAM", "FullGrad", "SESS", "RefineCAM",
    "DeepFeatureFactorization", "Concepts", "nmf",
]

"""Every explainer, one small class each; ``METHODS`` maps registry names to classes."""
from camlab.methods.base import METHODS, Explainer, ForwardPass, InputMethod, LayerMethod, register
from camlab.methods.baseline import RandomCAM
from camlab.methods.cam import CAM
from camlab.methods.eigen import EigenCAM
from camlab.methods.gradient import (GradCAM, GradCAMPlusPlus, GradientMethod, HiResCAM, LayerCAM,
                                     SmoothGradCAMPlusPlus, XGradCAM)
from camlab.methods.guided import Deconvnet, Gradient, GuidedBackprop, GuidedGradCAM
from camlab.methods.perturbation import AblationCAM, Occlusion, ScoreCAM

__all__ = [
    "METHODS", "Explainer", "ForwardPass", "InputMethod", "LayerMethod", "register",
    "CAM", "GradCAM", "GradientMethod", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM",
    "SmoothGradCAMPlusPlus", "Gradient", "Deconvnet", "GuidedBackprop", "GuidedGradCAM",
    "ScoreCAM", "AblationCAM", "Occlusion", "EigenCAM", "RandomCAM",
]

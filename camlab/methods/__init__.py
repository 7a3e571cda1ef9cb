"""Every explainer, one small class each; ``METHODS`` maps registry names to classes."""
from camlab.methods.base import METHODS, Explainer, ForwardPass, LayerMethod, register
from camlab.methods.cam import CAM
from camlab.methods.gradient import GradCAM, GradientMethod

__all__ = ["METHODS", "Explainer", "ForwardPass", "LayerMethod", "register", "CAM", "GradCAM", "GradientMethod"]

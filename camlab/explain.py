"""The one-call form: ``camlab.explain(model, x, method="gradcam")``."""
from __future__ import annotations

import torch
from torch import nn

from camlab.methods.registry import build, get_method  # noqa: F401 (get_method: public here)
from camlab.targets import Target


def explain(model: nn.Module, x: torch.Tensor, method: str = "gradcam", layer=None, target: Target = None,
            raw: bool = False, **options) -> torch.Tensor:
    """Build ``method`` for ``model`` with :func:`camlab.build` (at ``layer`` where the method has one) and run it on
    ``x``. Extra keyword ``options`` go to the method's constructor (e.g. ``batch_size`` for Score-CAM)."""
    return build(method, model, layer, **options)(x, target=target, raw=raw)

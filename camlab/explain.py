"""The one-call form: ``camlab.explain(model, x, method="gradcam")``."""
from __future__ import annotations

import difflib
import inspect

import torch
from torch import nn

from camlab.methods import METHODS
from camlab.targets import Target


def get_method(name: str) -> type:
    """The explainer class registered under ``name`` (case-insensitive; '-' and '_' ignored)."""
    key = name.lower().replace("-", "").replace("_", "")
    for registered, cls in METHODS.items():
        if registered.replace("_", "") == key:
            return cls
    close = difflib.get_close_matches(name.lower(), list(METHODS), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown method {name!r}{hint} Known methods: {', '.join(sorted(METHODS))}")


def explain(model: nn.Module, x: torch.Tensor, method: str = "gradcam", layer=None, target: Target = None,
            raw: bool = False, **options) -> torch.Tensor:
    """Build ``METHODS[method]`` for ``model`` (at ``layer`` where the method has one) and run it on ``x``.

    Extra keyword ``options`` go to the method's constructor (e.g. ``batch_size`` for Score-CAM)."""
    cls = get_method(method)
    parameters = inspect.signature(cls.__init__).parameters
    if "layer" in parameters:
        options["layer"] = layer
    elif layer is not None:
        raise ValueError(f"method {method!r} works on the input and takes no layer")
    return cls(model, **options)(x, target=target, raw=raw)

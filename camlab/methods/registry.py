"""The method registry: every explainer by name, in the course's order, and the one way to build one.

* :func:`register` - class decorator; adds a method to :data:`METHODS` (a name can be registered once).
* :func:`get_method` - a registered class by name (case-insensitive, ``-``/``_`` ignored, close names suggested).
* :func:`build` - ``build(method, model, layer=None, **options)``: the explainer, built the same way everywhere
  (``camlab.explain``, ``camlab.compare``, ``camlab.evaluate``, the sanity check, the CLI).
* :func:`ordered` - registered names in the course's order, optionally only those of a list (``"demo"``,
  ``"evaluate"``), so no caller keeps its own method list.

Options a method does not take: one dict of options can serve many methods (``progress=False``,
``batch_size=16``), so :func:`build` drops an option that the method's constructor does not accept **if another
registered method accepts it**; an option that no registered method accepts is a typo and raises ``TypeError``.
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from torch import nn

#: name -> explainer class, in registration order, which is the course's order (see ``camlab/methods/__init__.py``)
METHODS: dict[str, type] = {}

#: named lists of methods; :func:`ordered` returns each in the course's order
SELECTIONS: dict[str, frozenset[str]] = {
    #: the figure of ``camlab demo``
    "demo": frozenset({"cam", "gradcam", "gradcam++", "xgradcam", "layercam", "scorecam", "eigencam",
                       "guided_backprop", "guided_gradcam"}),
    #: the default rows of ``camlab evaluate``'s table
    "evaluate": frozenset({"cam", "gradcam", "gradcam++", "scorecam", "layercam", "guided_backprop", "random"}),
}


def register(name: str):
    """Class decorator: make a method available as ``camlab.METHODS[name]``, ``camlab.build(name, model)`` and
    ``camlab.explain(..., method=name)``. A name already taken by another class is refused (``ValueError``);
    registering the same class again (a module reloaded) replaces it."""

    def decorator(cls):
        previous = METHODS.get(name)
        if previous is not None and (previous.__module__, previous.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"a method named {name!r} is already registered ({previous.__module__}."
                             f"{previous.__qualname__}); choose another name for {cls.__qualname__}")
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorator


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get_method(name: str) -> type:
    """The explainer class registered under ``name`` (case-insensitive; '-' and '_' ignored)."""
    if not isinstance(name, str):
        raise TypeError(f"a method name must be a str, not {type(name).__name__}")
    for registered, cls in METHODS.items():
        if _key(registered) == _key(name):
            return cls
    close = difflib.get_close_matches(name.lower(), list(METHODS), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown method {name!r}{hint} Known methods: {', '.join(METHODS)}")


def ordered(selection: str | None = None) -> list[str]:
    """Registered method names in the course's order; with ``selection`` (a key of :data:`SELECTIONS`, e.g.
    ``"demo"``) only the methods of that list."""
    if selection is None:
        return list(METHODS)
    if selection not in SELECTIONS:
        raise ValueError(f"unknown method list {selection!r}; lists: {', '.join(SELECTIONS)}")
    return [name for name in METHODS if name in SELECTIONS[selection]]


def constructor_options(cls: type) -> set[str]:
    """The keyword options ``cls``'s constructor accepts besides ``model`` (``layer`` included, when it has one)."""
    parameters = inspect.signature(cls.__init__).parameters
    return {name for name, p in parameters.items()
            if name not in ("self", "model") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def takes_layer(cls: type) -> bool:
    """Whether ``cls`` explains a layer (its constructor has ``layer``) rather than the input."""
    return "layer" in constructor_options(cls)


def layer_for(method: str | type, layer):
    """``layer`` if ``method`` (a name or a class) explains a layer, else ``None``: for callers that give one layer to
    a mix of layer and input-space methods (:func:`camlab.compare.compare_methods`, :mod:`camlab.evaluate`)."""
    return layer if takes_layer(get_method(method) if isinstance(method, str) else method) else None


def build(method: str | type, model: nn.Module, layer=None, **options):
    """The explainer ``method`` (a registered name or an explainer class, your own subclass too) for ``model``.

    ``layer`` goes to methods that explain a layer (``None``: their default, the last spatial layer); a method
    that works on the input (gradient, guided backprop, occlusion, ...) accepts only ``layer=None``. ``options`` go
    to the constructor; an option the method does not take is dropped when another registered method takes it
    (e.g. ``progress=False`` for a method without a progress bar), else it is an error (a typo)."""
    cls = get_method(method) if isinstance(method, str) else method
    if not (isinstance(cls, type) and callable(cls)):
        raise TypeError(f"method must be a name in camlab.METHODS or an explainer class, not {type(method).__name__}")
    accepted = constructor_options(cls)
    label = getattr(cls, "name", "") or cls.__name__
    if "layer" in accepted:
        options["layer"] = layer
    elif layer is not None:
        raise ValueError(f"method {label!r} works on the input and takes no layer; call it with layer=None")
    known = set().union(*(constructor_options(other) for other in METHODS.values()))
    unknown = sorted(key for key in options if key not in accepted and key not in known)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))} for method {label!r}; it takes: "
                        f"{', '.join(sorted(accepted)) or 'no options'}")
    return cls(model, **{key: value for key, value in options.items() if key in accepted})


def builder(method, layer=None, **options) -> Callable[[nn.Module], object]:
    """A function ``model -> explainer`` that calls :func:`build` (for rebuilding on model copies)."""
    return lambda model: build(method, model, layer, **options)

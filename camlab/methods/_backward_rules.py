"""Backward rules for ReLU-like activations (guided backprop, deconvnet), applied during one forward pass.

See :mod:`camlab.methods.guided` for which of the two mechanisms here runs: :class:`BackwardRuleMode` intercepts
every torch function call; :class:`ModuleRuleHooks` hooks only the activation modules. :func:`rule_applied` picks one
per model and remembers the choice.
"""
from __future__ import annotations

import contextlib
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

INF = float("inf")


def _rule_gradient(grad: torch.Tensor, output: torch.Tensor | None, low: float, high: float, rule: str):
    """The backward signal below a clamp(x, low, high): guided :math:`g \\cdot [low < x < high] \\cdot [g > 0]`,
    deconvnet :math:`\\mathrm{ReLU}(g)`. ``x`` is inside ``(low, high)`` exactly when the clamp's output is, so the
    mask can be read off the output."""
    if rule != "guided":
        return grad.clamp_min(0)
    if high == INF:
        masked = torch.ops.aten.threshold_backward(grad, output, low)
    else:
        masked = torch.ops.aten.hardtanh_backward(grad, output, low, high)
    return masked.clamp_min_(0)  # in place on the fresh result: no second allocation


class _RuleClamp(torch.autograd.Function):
    """``clamp(x, low, high)`` (ReLU: low 0, high inf; ReLU6: 0, 6; hardtanh) with the rule's backward."""

    @staticmethod
    def forward(ctx, x, low, high, rule, inplace):
        ctx.low, ctx.high, ctx.rule = low, high, rule
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(low, None if high == INF else high)
        else:
            out = x.clamp(low, None if high == INF else high)
        ctx.save_for_backward(out if rule == "guided" else None)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return _rule_gradient(grad, out, ctx.low, ctx.high, ctx.rule), None, None, None, None


class _RuleOnOutput(_RuleClamp):
    """Attach the rule's backward to an activation module's ``output``, computed by the module itself from a
    *detached* copy of ``x``: forward returns ``output`` (no copy; it becomes this node's output), backward sends the
    rule's signal to ``x`` (the backward is inherited from :class:`_RuleClamp`)."""

    @staticmethod
    def forward(ctx, x, output, low, high, rule):
        ctx.low, ctx.high, ctx.rule = low, high, rule
        ctx.mark_dirty(output)
        ctx.save_for_backward(output if rule == "guided" else None)
        return output



def _argument(args, kwargs, position, name, default):
    if len(args) > position:
        return args[position]
    return kwargs.get(name, default)


def _is_zero(value) -> bool:
    """Whether ``value`` is the Python number 0 (a tensor bound may vary per element: not certainly a ReLU)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


def _threshold(inplace_position: int | None):
    """Reader for ``threshold(x, threshold, value)``: a ReLU exactly when both are 0, else ``None``."""
    def read(a, k):
        if not (_is_zero(_argument(a, k, 1, "threshold", None)) and _is_zero(_argument(a, k, 2, "value", None))):
            return None
        inplace = True if inplace_position is None else bool(_argument(a, k, inplace_position, "inplace", False))
        return 0.0, INF, inplace
    return read


def _clamp(inplace: bool, has_max: bool = True):
    """Reader for ``clamp(x, min, max)`` / ``clamp_min(x, min)``: a ReLU exactly when ``min`` is 0 and there is no
    ``max`` (and no ``out=``), else ``None``."""
    def read(a, k):
        if "out" in k or not _is_zero(_argument(a, k, 1, "min", None)):
            return None
        if has_max and _argument(a, k, 2, "max", None) is not None:
            return None
        return 0.0, INF, inplace
    return read


# func -> (low, high, in-place) readers; each takes (args, kwargs) and returns None where the call is not a ReLU-like
# clamp after all (a threshold other than (0, 0), a clamp with another bound)
_RELU_LIKE = {
    F.relu: lambda a, k: (0.0, INF, bool(_argument(a, k, 1, "inplace", False))),
    torch.relu: lambda a, k: (0.0, INF, False),
    torch.relu_: lambda a, k: (0.0, INF, True),
    torch.Tensor.relu: lambda a, k: (0.0, INF, False),
    torch.Tensor.relu_: lambda a, k: (0.0, INF, True),
    F.relu6: lambda a, k: (0.0, 6.0, bool(_argument(a, k, 1, "inplace", False))),
    F.hardtanh: lambda a, k: (float(_argument(a, k, 1, "min_val", -1.0)), float(_argument(a, k, 2, "max_val", 1.0)),
                              bool(_argument(a, k, 3, "inplace", False))),
    F.hardtanh_: lambda a, k: (float(_argument(a, k, 1, "min_val", -1.0)), float(_argument(a, k, 2, "max_val", 1.0)),
                               True),
    F.threshold: _threshold(3), F.threshold_: _threshold(None),
    torch.threshold: _threshold(3), torch.threshold_: _threshold(None),
    torch.clamp: _clamp(False), torch.clip: _clamp(False), torch.Tensor.clamp: _clamp(False),
    torch.Tensor.clip: _clamp(False), torch.clamp_: _clamp(True), torch.clip_: _clamp(True),
    torch.Tensor.clamp_: _clamp(True), torch.Tensor.clip_: _clamp(True),
    torch.clamp_min: _clamp(False, has_max=False), torch.Tensor.clamp_min: _clamp(False, has_max=False),
    torch.clamp_min_: _clamp(True, has_max=False), torch.Tensor.clamp_min_: _clamp(True, has_max=False),
}
_THRESHOLDS = (F.threshold, F.threshold_, torch.threshold, torch.threshold_)

# activations that keep their plain gradient (warned about)
_OTHER_ACTIVATIONS = {
    F.silu: "SiLU", F.gelu: "GELU", F.hardswish: "Hardswish", F.hardsigmoid: "Hardsigmoid", F.mish: "Mish",
    F.elu: "ELU", F.leaky_relu: "LeakyReLU", F.selu: "SELU", F.celu: "CELU", F.softplus: "Softplus",
    F.prelu: "PReLU", F.rrelu: "RReLU", F.logsigmoid: "LogSigmoid",
}
_OTHER_MODULES = (nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.ELU, nn.LeakyReLU, nn.SELU, nn.CELU,
                  nn.Softplus, nn.PReLU, nn.RReLU, nn.LogSigmoid)


def _clamp_range(module: nn.Module) -> tuple[float, float] | None:
    """(low, high) of a ReLU-like module (``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardtanh``), else None."""
    if type(module) is nn.ReLU:
        return 0.0, INF
    if type(module) in (nn.ReLU6, nn.Hardtanh):  # exact types: a subclass may compute something else
        return float(module.min_val), float(module.max_val)
    if type(module) is nn.Threshold and _is_zero(module.threshold) and _is_zero(module.value):
        return 0.0, INF
    return None


_RELU_LIKE_OPS = ("aten::relu", "aten::threshold", "aten::clamp", "aten::hardtanh", "aten::clip")


def _scripted(model: nn.Module) -> set[str]:
    """The outermost TorchScript submodules (``torch.jit.script`` / ``trace``) that run ReLU-like ops: their code
    runs in C++, out of reach of hooks and the function mode, so those ops keep their plain gradient."""
    found = set()
    for name, module in model.named_modules():
        if not isinstance(module, torch.jit.ScriptModule) or any(name.startswith(f"{outer}.") for outer in found):
            continue
        try:
            graph = str(module.inlined_graph)
        except Exception:  # noqa: BLE001 - a graph camlab cannot read may hold anything: say so
            graph = "aten::relu"
        if any(op in graph for op in _RELU_LIKE_OPS):
            found.add(name)
    return {f"ReLU-like ops inside the TorchScript module {name!r}" for name in found}


def _other_activation_names(model: nn.Module) -> set[str]:
    """Activations that keep their plain gradient: other activation modules (a threshold that is not a ReLU too),
    and ReLU-like ops inside TorchScript submodules."""
    others = {type(module).__name__ for module in model.modules()
              if isinstance(module, _OTHER_MODULES) or (type(module) is nn.Threshold and _clamp_range(module) is None)}
    return others | _scripted(model)


class BackwardRuleMode(TorchFunctionMode):
    """While active, every ReLU-like call (see :mod:`camlab.methods.guided`) gets the ``rule`` backward
    (``"guided"`` or ``"deconvnet"``); other activations run unchanged and are recorded in ``plain``. ``outside``
    counts ReLU-like calls made while no ReLU-like module is running (``inside`` is kept by :func:`_tracking`)."""

    def __init__(self, rule: str, plain=()):
        super().__init__()
        self.rule = rule
        self.plain: set[str] = set(plain)
        self.inside = 0
        self.outside = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reader = _RELU_LIKE.get(func)
        if reader is not None and args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            bounds = reader(args, kwargs)
            if bounds is not None:
                low, high, inplace = bounds
                self.outside += self.inside == 0
                return _RuleClamp.apply(args[0], low, high, self.rule, inplace)
            if func in _THRESHOLDS:
                self.plain.add("Threshold")
        name = _OTHER_ACTIVATIONS.get(func)
        if name is not None:
            self.plain.add(name)
        return func(*args, **kwargs)


def _hooked(model: nn.Module, pre, post) -> contextlib.ExitStack:
    """Register ``pre`` / ``post`` (given the module's clamp range) on every ReLU-like module; the returned stack
    removes them all."""
    stack = contextlib.ExitStack()
    for module in model.modules():
        bounds = _clamp_range(module)
        if bounds is not None:
            stack.callback(module.register_forward_pre_hook(pre(bounds)).remove)
            stack.callback(module.register_forward_hook(post(bounds), prepend=True).remove)
    return stack


class ModuleRuleHooks:
    """Apply ``rule`` at every ReLU-like module by hooks (no torch function interception): the pre-hook keeps the
    input ``x`` and hands the module ``x.detach()``; the forward hook returns ``_RuleOnOutput(x, output)``."""

    def __init__(self, model: nn.Module, rule: str, plain: set[str]):
        self.model, self.rule, self.plain = model, rule, set(plain)
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> "ModuleRuleHooks":
        kept: list[torch.Tensor | None] = []  # a stack: a shared module may run several times

        def pre(bounds):
            def hook(module, args):
                x = args[0] if args else None
                if not (isinstance(x, torch.Tensor) and x.requires_grad and x.is_floating_point()):
                    kept.append(None)
                    return None
                kept.append(x)
                return (x.detach(),) + tuple(args[1:])
            return hook

        def post(bounds):
            def hook(module, args, output):
                x = kept.pop()
                return None if x is None else _RuleOnOutput.apply(x, output, bounds[0], bounds[1], self.rule)
            return hook

        self._stack = _hooked(self.model, pre, post)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


class _Probe:
    """The first call on a model: the mode, plus hooks counting how deep inside ReLU-like modules each call is;
    on success the plan (functional ReLU-like calls or not; plain activations) is stored for the model."""

    def __init__(self, model: nn.Module, rule: str):
        self.model, self.mode = model, BackwardRuleMode(rule)
        self.plain = self.mode.plain
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> "_Probe":
        def enter(bounds):
            def hook(module, args):
                self.mode.inside += 1
            return hook

        def leave(bounds):
            def hook(module, args, output):
                self.mode.inside -= 1
            return hook

        self._stack = _hooked(self.model, enter, leave)
        self._stack.enter_context(self.mode)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._stack.close()
        if exc_type is None:
            self.plain |= _other_activation_names(self.model)
            _PLANS[self.model] = (_signature(self.model), self.mode.outside > 0, frozenset(self.plain))


_PLANS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _signature(model: nn.Module) -> tuple:
    return tuple(id(module) for module in model.modules())


def uses_functional_activations(model: nn.Module) -> bool | None:
    """Whether ``model``'s forward calls ReLU-like functions outside ReLU-like modules (found on its first guided
    backprop / deconvnet call; None before that, or after its modules changed)."""
    plan = _PLANS.get(model)
    if plan is None or plan[0] != _signature(model):
        return None
    return plan[1]


def rule_applied(model: nn.Module, rule: str):
    """A context manager applying ``rule`` during the forward pass it wraps; its ``plain`` attribute names the
    activations that kept their plain gradient (filled in by the end of the pass)."""
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            f"the {rule} rule cannot be applied to a TorchScript model ({type(model).__name__}): its code runs in "
            "C++, out of reach of camlab's hooks, so the result would be the plain gradient; pass the nn.Module "
            "before torch.jit.script / torch.jit.trace"
        )
    functional = uses_functional_activations(model)
    if functional is None:
        return _Probe(model, rule)
    if functional:
        return BackwardRuleMode(rule, _PLANS[model][2])
    return ModuleRuleHooks(model, rule, _PLANS[model][2])

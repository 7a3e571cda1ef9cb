"""Everything about a model that an explainer must leave as it found it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_state_dict_hooks", "_load_state_dict_pre_hooks")


@dataclass
class ModelSnapshot:
    training: dict
    requires_grad: dict
    hooks: dict
    state: dict
    grads: dict
    modules: dict

    @classmethod
    def of(cls, model: nn.Module) -> "ModelSnapshot":
        return cls(
            training={name: m.training for name, m in model.named_modules()},
            requires_grad={name: p.requires_grad for name, p in model.named_parameters()},
            hooks={(name, d): tuple(getattr(m, d, {}).keys()) for name, m in model.named_modules() for d in _HOOK_DICTS},
            state={name: t.detach().clone() for name, t in model.state_dict(keep_vars=True).items()},
            grads={name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
            modules={name: type(m) for name, m in model.named_modules()},
        )

    def assert_unchanged(self, model: nn.Module) -> None:
        after = ModelSnapshot.of(model)
        assert after.training == self.training, "train/eval mode changed"
        assert after.requires_grad == self.requires_grad, "requires_grad flags changed"
        assert after.hooks == self.hooks, "hooks left behind or removed"
        assert after.modules == self.modules, "modules were replaced"
        assert after.state.keys() == self.state.keys()
        for name, tensor in self.state.items():
            assert torch.equal(after.state[name], tensor), f"parameter or buffer {name} changed"
        for name, grad in self.grads.items():
            other = after.grads[name]
            assert (grad is None and other is None) or (grad is not None and other is not None and torch.equal(grad, other)), \
                f".grad of {name} changed"

"""The user guide's "Write your own method" page (docs/guide/own-method.md), run exactly as it stands: a weighted sum of channels, a weight per
position, and several layers at once. Each block runs in the namespace of the blocks before it (as a reader would
run them one after the other); the maps are then checked against the formula each block's docstring states,
computed here from the captured activations and gradients of plain Grad-CAM."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import camlab

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guide" / "own-method.md"


def _section() -> str:
    """The page's text."""
    return PAGE.read_text(encoding="utf-8")


def _blocks() -> dict[str, str]:
    """``{## heading: the python code block under it}``."""
    blocks = {}
    for part in _section().split("\n## ")[1:]:
        heading = part.splitlines()[0].strip()
        code = re.search(r"```python\n(.*?)```", part, re.S)
        assert code, f"no python block under '## {heading}'"
        blocks[heading] = code.group(1)
    return blocks


@pytest.fixture(scope="module")
def namespaces() -> dict[str, dict]:
    namespace: dict = {}
    after = {}
    for heading, code in _blocks().items():
        exec(compile(code, f"{PAGE.name}: {heading}", "exec"), namespace)
        after[heading] = dict(namespace)
    return after


def _gradcam_pass(model, x, target, layer="features"):
    return camlab.GradCAM(model, layer=layer).forward_pass(x, target)


def test_the_section_has_the_three_kinds_of_method():
    assert list(_blocks()) == ["A weighted sum of channels", "A weight per position", "Several layers at once"]


def test_weighted_sum_of_channels_uses_the_largest_gradient_per_channel(namespaces):
    """heat = scale(up(ReLU(sum_k max_ij(g^k_ij) A^k))), per image."""
    ns = namespaces["A weighted sum of channels"]
    target = ns["scenes"].labels.tolist()
    forward = _gradcam_pass(ns["model"], ns["x"], target)
    expected = torch.einsum("nk,nkhw->nhw", forward.gradients.amax(dim=(2, 3)), forward.activations).clamp_min(0)
    expected = camlab.scale(camlab.upsample(expected, (64, 64)))
    assert ns["heat"].shape == (4, 64, 64)
    assert torch.allclose(ns["heat"], expected, atol=1e-5)


def test_weight_per_position_is_the_gradient_magnitude(namespaces):
    """raw = ReLU(sum_k |g^k| * A^k) at the default layer (lab_gap: 'features', 16x16)."""
    ns = namespaces["A weight per position"]
    forward = _gradcam_pass(ns["model"], ns["x"], ns["scenes"].labels.tolist())
    expected = (forward.gradients.abs() * forward.activations).sum(dim=1).clamp_min(0)
    assert ns["raw"].shape == (4, 16, 16)
    assert torch.allclose(ns["raw"], expected, atol=1e-5)
    assert torch.allclose(ns["heat"], camlab.scale(camlab.upsample(expected, (64, 64))), atol=1e-5)


def test_several_layers_average_the_scaled_single_layer_maps(namespaces):
    """fused = mean over layers of scale(up(ReLU(Grad-CAM at the layer))) at the largest layer's resolution (32x32
    for features.6), then upsampled to the input and scaled once more."""
    ns = namespaces["Several layers at once"]
    target = ns["scenes"].labels.tolist()
    single = [camlab.GradCAM(ns["model"], layer=name)(ns["x"], target=target, raw=True)
              for name in ("features.6", "features")]
    expected = torch.stack([camlab.scale(camlab.upsample(m, (32, 32))) for m in single]).mean(dim=0)
    assert torch.allclose(ns["fused"], camlab.scale(camlab.upsample(expected, (64, 64))), atol=1e-5)


def test_an_explainer_of_several_layers_restores_the_model(namespaces):
    ns = namespaces["Several layers at once"]
    model = ns["model"]
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    ns["MeanLayerGradCAM"](model, layer=["features.6", "features"])(ns["x"][:1])
    assert not model.training and sum(len(m._forward_hooks) for m in model.modules()) == hooks

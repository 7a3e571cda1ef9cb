"""The speed-ups of the perturbation methods fall back safely: Score-CAM's channels-last batches on a model that
calls ``.view``, Ablation-CAM's broadcast shortcut on a model that raises on mismatched batch sizes.

Each test failed on main at e3ff581 unless its docstring says it guards a behaviour that already held."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import camlab
from tests.test_methods_formulas import naive_ablation_cam


class ViewHead(nn.Module):
    """conv -> BatchNorm -> ReLU -> ``.view(N, -1)`` -> fc: ``.view`` needs a contiguous feature map, so the model
    fails on channels-last inputs. ``flatten=True`` is the same network with ``flatten``, which works on both."""

    def __init__(self, flatten: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 3)
        self.flatten = flatten

    def forward(self, x):
        features = self.bn(self.conv(x)).relu()
        return self.fc(features.flatten(1) if self.flatten else features.view(features.shape[0], -1))


def test_scorecam_runs_a_model_that_calls_view_and_gives_the_map_of_the_same_network_with_flatten():
    """Failed on main: "view size is not compatible with input tensor's size and stride"."""
    torch.manual_seed(0)
    model, x = ViewHead().eval(), torch.randn(2, 3, 8, 8)
    twin = ViewHead(flatten=True).eval()
    twin.load_state_dict(model.state_dict())
    for weighting in ("probability", "paper"):
        got = camlab.ScoreCAM(model, "conv", progress=False, weighting=weighting)(x, target=2, raw=True)
        expected = camlab.ScoreCAM(twin, "conv", progress=False, weighting=weighting)(x, target=2, raw=True)
        torch.testing.assert_close(got, expected)


def test_scorecam_remembers_per_model_that_it_needs_contiguous_inputs():
    """After the first failure on channels-last, later calls send only contiguous batches (no failing attempt)."""
    model, x = ViewHead().eval(), torch.randn(1, 3, 8, 8)
    camlab.ScoreCAM(model, "conv", progress=False, batch_size=2)(x, target=0)
    layouts = []
    # (the BatchNorm-folded private copy inherits this hook; only the model's own calls are recorded)
    model.register_forward_pre_hook(lambda module, args: layouts.append(args[0].is_contiguous())
                                    if module is model else None)
    camlab.ScoreCAM(model, "conv", progress=False, batch_size=2)(x, target=0)
    assert layouts and all(layouts)


class BatchSizeChecks(nn.Module):
    """conv a -> ReLU -> conv b -> ReLU -> (+ skip from a) -> GAP -> fc, which checks that the skip and the main
    path have the same batch size and raises ``error`` if not (as a model asserting its shapes does)."""

    def __init__(self, error: type[Exception]):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.error = error

    def forward(self, x):
        skip = self.a(x).relu()
        main = self.b(skip).relu()
        if main.shape[0] != skip.shape[0]:
            raise self.error(f"batch sizes differ: {main.shape[0]} and {skip.shape[0]}")
        return self.fc((main + skip).mean((2, 3)))


@pytest.mark.parametrize("error", [ValueError, IndexError, AssertionError, RuntimeError])
def test_ablationcam_falls_back_when_the_broadcast_attempt_raises_any_error(error):
    """Failed on main for ValueError, IndexError and AssertionError (only RuntimeError fell back): the error of the
    broadcast attempt reached the caller."""
    torch.manual_seed(0)
    model, x = BatchSizeChecks(error).eval(), torch.randn(2, 3, 8, 8)
    got = camlab.AblationCAM(model, "b", progress=False, batch_size=3)(x, target=1, raw=True)
    torch.testing.assert_close(got, naive_ablation_cam(model, model.b, x, 1))


class FailsOnBatches(BatchSizeChecks):
    """A real error of the model: it cannot run on more than one image at all."""

    def forward(self, x):
        if x.shape[0] > 1:
            raise ValueError("this model takes one image at a time")
        return super().forward(x)


def test_ablationcam_still_raises_a_real_error_of_the_model():
    """The fallback (repeated inputs) runs the model as it is, so an error of the model itself surfaces instead of
    being swallowed. (On main the broadcast attempt's "batch sizes differ" surfaced instead.)"""
    with pytest.raises(ValueError, match="one image at a time"):
        camlab.AblationCAM(FailsOnBatches(ValueError).eval(), "b", progress=False)(torch.randn(1, 3, 8, 8), target=0)

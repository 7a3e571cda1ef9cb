"""One registry, one builder: ``camlab.build``, ``camlab.methods.register`` and ``camlab.methods.ordered``, and the
traps a newcomer's method used to fall into (a hidden ``prepare`` step, a layer list, a silently replaced name)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import camlab
from camlab.methods import METHODS, ordered, register
from tests.tiny_nets import GapNet, OneConvNet

X = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])
FC_ROW = [1.0, 2.0, 3.0, 4.0, -1.0, -1.0, -1.0, -1.0]


def one_conv_net():
    return OneConvNet(torch.tensor([FC_ROW, [0.0] * 8]))


def test_build_by_name_gives_the_registered_class_at_the_layer():
    explainer = camlab.build("grad-cam", one_conv_net(), layer="relu")
    assert type(explainer) is camlab.GradCAM and explainer.layer_name == "relu"


def test_build_takes_a_class_too_and_passes_its_options():
    explainer = camlab.build(camlab.ScoreCAM, one_conv_net(), "relu", batch_size=3, progress=False)
    assert (explainer.batch_size, explainer.progress) == (3, False)


def test_an_option_that_another_method_takes_is_dropped_for_a_method_without_it():
    """``progress`` belongs to the perturbation methods; Grad-CAM has no bar, so it is dropped, not an error."""
    explainer = camlab.build("gradcam", one_conv_net(), "relu", progress=False, batch_size=8)
    assert type(explainer) is camlab.GradCAM


def test_an_option_no_method_takes_is_a_typo_and_names_what_the_method_takes():
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'progres' for method 'scorecam'; it takes: "
                                        r"aug_smooth, batch_size, eigen_smooth, fold, layer, progress, relu, "
                                        r"reshape_transform, weighting"):
        camlab.build("scorecam", one_conv_net(), "relu", progres=False)


def test_a_layer_for_a_method_that_works_on_the_input_is_a_clear_error():
    with pytest.raises(ValueError, match="method 'guided_backprop' works on the input and takes no layer"):
        camlab.build("guided_backprop", one_conv_net(), layer="relu")
    with pytest.raises(ValueError, match="works on the input and takes no layer"):
        camlab.explain(one_conv_net(), X, method="gradient", layer="relu")


def test_a_layerless_method_builds_with_layer_none():
    assert type(camlab.build("gradient", one_conv_net())) is camlab.Gradient


def test_build_refuses_what_is_neither_a_name_nor_a_class():
    with pytest.raises(TypeError, match="a name in camlab.METHODS or an explainer class"):
        camlab.build(42, one_conv_net())


def test_register_refuses_a_name_that_is_taken():
    with pytest.raises(ValueError, match="a method named 'gradcam' is already registered .*GradCAM.*choose another"):
        @register("gradcam")
        class NotGradCAM(camlab.GradCAM):
            pass
    assert METHODS["gradcam"] is camlab.GradCAM


def test_a_registered_method_is_built_by_name_and_listed_last():
    @register("test_maxgrad")
    class MaxGradCAM(camlab.GradientMethod):
        def channel_weights(self, activations, gradients):
            return gradients.amax(dim=(2, 3))

    try:
        assert ordered()[-1] == "test_maxgrad"
        raw = camlab.explain(one_conv_net(), X, method="test_maxgrad", layer="relu", target=0, raw=True)
        # A^0 = [[1,0],[3,0]], A^1 = [[0,2],[0,0]]; max gradients (4, -1): ReLU(4 A^0 - A^1) = [[4,0],[12,0]]
        assert torch.allclose(raw, torch.tensor([[[4.0, 0.0], [12.0, 0.0]]]))
    finally:
        del METHODS["test_maxgrad"]


def test_the_method_list_follows_the_course():
    assert ordered()[:6] == ["cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"]
    assert ordered("demo") == ["cam", "gradcam", "gradcam++", "xgradcam", "layercam", "scorecam", "eigencam",
                               "guided_backprop", "guided_gradcam"]
    with pytest.raises(ValueError, match="unknown method list 'slides'; lists: demo, evaluate"):
        ordered("slides")


def test_overriding_compute_needs_no_hidden_preparation():
    """A plain model (no ``model.camlab``) with ``layer=None``: the layer is resolved by ``forward_pass`` itself."""

    class Activations(camlab.LayerMethod):
        def compute(self, x, target):
            return self.forward_pass(x, target).activations.sum(dim=1)

    net = GapNet()
    explainer = Activations(net)
    assert explainer.layer_name is None
    x = torch.randn(2, 3, 8, 8)
    raw = explainer(x, raw=True)
    expected = net.features(x).sum(dim=1).clamp_min(0)
    assert explainer.layer_name == "features" and torch.allclose(raw, expected.detach(), atol=1e-6)


def test_a_list_of_layers_for_a_single_layer_method_is_a_clear_error():
    with pytest.raises(ValueError, match="GradCAM explains one layer; got a list of layers .*LayerCAM fuses several"):
        camlab.GradCAM(GapNet(), layer=["features.1", "features.3"])


def test_import_camlab_gives_the_metrics():
    code = "import camlab; print(camlab.metrics.pointing_game.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pointing_game"


def test_one_layer_for_a_mix_of_methods_goes_to_the_layer_methods_only():
    from camlab.methods.registry import layer_for

    assert layer_for("gradcam", "features") == "features" and layer_for(camlab.CAM, "features") == "features"
    assert layer_for("guided_backprop", "features") is None and layer_for(camlab.Occlusion, "features") is None

"""Hand-computed maps on tiny nets with weights set by hand, and the identities between methods."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camlab

# A = the input itself (an Identity layer), y = W . flatten(A): the gradient dy/dA is W, set by hand.
A0 = [[1.0, 2.0], [3.0, 0.0]]   # sum 6
A1 = [[0.0, 0.0], [0.0, 1.0]]   # sum 1
W0 = [[1.0, 0.0], [-1.0, 2.0]]
W1 = [[0.0, 0.0], [0.0, -1.0]]


def linear_head_net() -> tuple[nn.Module, torch.Tensor]:
    """Identity ("0", the layer) -> flatten -> linear with two classes; class 0's row is W = (W0, W1)."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].weight[0] = torch.tensor([W0, W1]).flatten()
    return model.eval(), torch.tensor([[A0, A1]])


def test_gradcam_plus_plus_by_hand():
    """g = W, sum A0 = 6, sum A1 = 1. alpha = g^2 / (2 g^2 + sum(A) g^3):
    channel 0: (0,0) g=1: 1/(2+6) = 1/8; (0,1) g=0: 0 (zero denominator); (1,0) g=-1: ReLU(g)=0, no weight;
    (1,1) g=2: 4/(8+48) = 1/14. w0 = 1/8*1 + 1/14*2 = 15/56. Channel 1: only g=-1, ReLU(g)=0 -> w1 = 0.
    Map = ReLU(15/56 * A0)."""
    model, x = linear_head_net()
    heat = camlab.GradCAMPlusPlus(model, layer="0")(x, target=0, raw=True)
    assert torch.allclose(heat[0], 15 / 56 * torch.tensor(A0))


def test_layercam_by_hand():
    """ReLU(g) per position: channel 0 [[1,0],[0,2]] * A0 = [[1,0],[0,0]]; channel 1 ReLU(-1) = 0.
    Map = [[1,0],[0,0]]."""
    model, x = linear_head_net()
    heat = camlab.LayerCAM(model, layer="0")(x, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_hirescam_and_xgradcam_by_hand():
    """HiResCAM: sum_k g*A = [[1,0],[-3,0]] + [[0,0],[0,-1]] = [[1,0],[-3,-1]] (signed with relu=False).
    XGrad-CAM: w0 = (1*1 + 2*0 + 3*(-1) + 0*2)/6 = -1/3, w1 = (1*(-1))/1 = -1; map = -A0/3 - A1."""
    model, x = linear_head_net()
    hires = camlab.HiResCAM(model, layer="0", relu=False)(x, target=0, raw=True)
    assert torch.allclose(hires[0], torch.tensor([[1.0, 0.0], [-3.0, -1.0]]))
    xgrad = camlab.XGradCAM(model, layer="0", relu=False)(x, target=0, raw=True)
    assert torch.allclose(xgrad[0], -torch.tensor(A0) / 3 - torch.tensor(A1))


def test_scorecam_by_hand():
    """Layer = the input (1,2,1,2): channel 0 = [0, 2] -> mask [0, 1]; channel 1 = [1, 1] is constant -> skipped,
    weight 0 (the authors' ``continue``). Masked input: channel 0 [0, 2], channel 1 [0, 1] -> flatten [0,2,0,1].
    Class-0 row [0, ln3/2, 0, 0], class-1 row 0: logits (ln 3, 0), softmax_0 = 3/(3+1) = 3/4.
    Map = ReLU(3/4 * [0, 2] + 0 * [1, 1]) = [0, 1.5]."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(4, 2, bias=False)).eval()
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].weight[0, 1] = math.log(3) / 2
    x = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    heat = camlab.ScoreCAM(model, layer="0", progress=False)(x, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[0.0, 1.5]]))


class TwoLayer(nn.Module):
    """x (1,3,1,1) -> flatten -> identity linear -> activation -> linear with row (1, 1, -1)."""

    def __init__(self, activation):
        super().__init__()
        self.hidden = nn.Linear(3, 3, bias=False)
        self.out = nn.Linear(3, 1, bias=False)
        self.activation = activation
        with torch.no_grad():
            self.hidden.weight.copy_(torch.eye(3))
            self.out.weight.copy_(torch.tensor([[1.0, 1.0, -1.0]]))

    def forward(self, x):
        return self.out(self.activation(self.hidden(x.flatten(1))))


def functional_relu(h):
    h = F.relu(h, inplace=True)  # torchvision DenseNet style
    return torch.relu(h)


@pytest.mark.parametrize("activation, x, vanilla, guided, deconv", [
    # ReLU, x = (1, -1, 2): vanilla = out row * [x>0] = (1, 0, -1); guided also drops the negative signal:
    # (1, 0, 0); deconvnet = ReLU(out row) = (1, 1, 0) regardless of x.
    (nn.ReLU(), [1.0, -1.0, 2.0], [1, 0, -1], [1, 0, 0], [1, 1, 0]),
    (nn.ReLU(inplace=True), [1.0, -1.0, 2.0], [1, 0, -1], [1, 0, 0], [1, 1, 0]),
    (functional_relu, [1.0, -1.0, 2.0], [1, 0, -1], [1, 0, 0], [1, 1, 0]),
    # ReLU6, x = (1, 7, 2): 7 is outside (0, 6) so its gradient is 0 in both vanilla and guided.
    (nn.ReLU6(inplace=True), [1.0, 7.0, 2.0], [1, 0, -1], [1, 0, 0], [1, 1, 0]),
    (lambda h: F.relu6(h), [1.0, 7.0, 2.0], [1, 0, -1], [1, 0, 0], [1, 1, 0]),
])
def test_guided_backprop_and_deconvnet_by_hand(activation, x, vanilla, guided, deconv):
    """The guided rule differs from the vanilla gradient exactly where the backward signal at the ReLU is negative
    (the third unit); deconvnet ignores the forward mask."""
    model = TwoLayer(activation).eval()
    inputs = torch.tensor(x).reshape(1, 3, 1, 1)
    got_vanilla = camlab.Gradient(model)(inputs, target=0, raw=True).flatten()
    got_guided = camlab.GuidedBackprop(model)(inputs, target=0, raw=True).flatten()
    got_deconv = camlab.Deconvnet(model)(inputs, target=0, raw=True).flatten()
    assert got_vanilla.tolist() == vanilla
    assert got_guided.tolist() == guided
    assert got_deconv.tolist() == deconv
    assert (got_guided != got_vanilla).tolist() == [False, False, True]


def test_guided_backprop_warns_once_naming_other_activations():
    model = TwoLayer(nn.Sequential(nn.SiLU(), nn.GELU())).eval()
    with pytest.warns(UserWarning, match="GELU, SiLU") as record:
        camlab.GuidedBackprop(model)(torch.ones(1, 3, 1, 1), target=0)
    assert len(record) == 1


def test_guided_display_scaling_maps_zero_to_half():
    """Display scaling g / (2 max|g|) + 0.5: the vanilla gradient (1, 0, -1) becomes (1, 0.5, 0)."""
    model = TwoLayer(nn.ReLU()).eval()
    image = camlab.Gradient(model)(torch.tensor([1.0, -1.0, 2.0]).reshape(1, 3, 1, 1), target=0).flatten()
    assert image.tolist() == [1.0, 0.5, 0.0]


class GapNet(nn.Module):
    """conv -> ReLU -> conv ("layer") -> ReLU -> GAP -> linear: the layer's gradient is spatially constant."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.layer = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.layer(self.stem(x)).mean(dim=(2, 3)))


def test_gap_head_gradcam_xgradcam_cam_agree_and_hirescam_is_gradcam_times_hw():
    """With GAP + linear after the layer, dy/dA^k_ij = w_k / Z everywhere. Grad-CAM: alpha_k = w_k / Z;
    XGrad-CAM: sum_ij A_ij/sum(A) * w_k/Z = w_k/Z (same weights); CAM: w_k. So all three maps are equal up to scale
    (equal after min-max scaling), and HiResCAM = ReLU(sum_k (w_k/Z) A^k) = Grad-CAM exactly, raw maps included."""
    torch.manual_seed(0)
    model = GapNet().eval()
    x = torch.randn(3, 3, 6, 6)
    target = [0, 1, 3]
    gradcam = camlab.GradCAM(model, layer="layer")(x, target=target)
    for method in (camlab.XGradCAM, camlab.CAM):
        assert torch.allclose(method(model, layer="layer")(x, target=target), gradcam, atol=1e-5)
    raw_gradcam = camlab.GradCAM(model, layer="layer")(x, target=target, raw=True)
    raw_hires = camlab.HiResCAM(model, layer="layer")(x, target=target, raw=True)
    assert torch.allclose(raw_hires, raw_gradcam, atol=1e-6)


def test_layercam_fusion_of_two_layers():
    """Two layers: the shallow map M_s (6x6) becomes tanh(2 M_s / max M_s), the deep map M_d / max M_d, both at
    6x6 (the larger resolution), fused by the element-wise maximum."""
    torch.manual_seed(1)
    model = GapNet().eval()
    x = torch.randn(2, 3, 6, 6)
    shallow = camlab.LayerCAM(model, layer="stem")(x, target=1, raw=True)
    deep = camlab.LayerCAM(model, layer="layer")(x, target=1, raw=True)
    expected = torch.maximum(torch.tanh(2 * shallow / shallow.amax(dim=(1, 2), keepdim=True)),
                             deep / deep.amax(dim=(1, 2), keepdim=True))
    fused = camlab.LayerCAM(model, layer=["stem", "layer"])(x, target=1, raw=True)
    assert torch.allclose(fused, expected, atol=1e-6)


def test_eigencam_sign_is_stable_and_is_first_principal_direction():
    """Weights = v1 of the (hw x K) activation matrix; flipping the sign of every activation's SVD cannot flip the
    map: the projection must correlate positively with the channel-mean map."""
    torch.manual_seed(2)
    model = GapNet().eval()
    x = torch.randn(2, 3, 6, 6)
    heat = camlab.EigenCAM(model, layer="layer", relu=False)(x, raw=True)
    from camlab.hooks import ActivationCapture
    with ActivationCapture(model.layer) as capture, torch.no_grad():
        model(x)
    activations = capture.activation
    mean_map = activations.mean(dim=1)
    assert ((heat * mean_map).sum(dim=(1, 2)) >= 0).all()
    matrix = activations.flatten(2).transpose(1, 2).double()
    v1 = torch.linalg.svd(matrix, full_matrices=False).Vh[:, 0]
    projection = torch.einsum("npk,nk->np", matrix, v1).reshape(heat.shape).float()
    assert torch.allclose(heat.abs(), projection.abs(), atol=1e-5)


class ConcatNet(nn.Module):
    """A DenseNet-style skip around the layer: torch.cat([stem, layer(stem)]) cannot broadcast a batch-1 stem
    against the ablated batch, so Ablation-CAM must fall back to repeating the input."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.layer = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(9, 3)

    def forward(self, x):
        stem = self.stem(x)
        return self.fc(torch.cat([stem, self.layer(stem)], dim=1).amax(dim=(2, 3)))


def naive_ablation_cam(model, layer, x, target):
    """w_k = (y - y_k) / y with channel k of the layer's output zeroed, one forward pass per channel and image."""
    captured = []
    handle = layer.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    with torch.no_grad():
        y = model(x)[:, target]
    handle.remove()
    activations = captured[0]
    maps = []
    for n in range(len(x)):
        weights = []
        for k in range(activations.shape[1]):
            def zero_k(module, inputs, output, k=k):
                output = output.clone()
                output[:, k] = 0
                return output
            handle = layer.register_forward_hook(zero_k)
            with torch.no_grad():
                y_k = model(x[n:n + 1])[0, target]
            handle.remove()
            weights.append((y[n] - y_k) / y[n])
        maps.append(torch.einsum("k,khw->hw", torch.stack(weights), activations[n]).clamp_min(0))
    return torch.stack(maps)


@pytest.mark.parametrize("net", [GapNet, ConcatNet])
def test_ablationcam_matches_naive_ablation(net):
    torch.manual_seed(3)
    model = net().eval()
    x = torch.randn(2, 3, 6, 6)
    ours = camlab.AblationCAM(model, layer="layer", batch_size=2, progress=False)(x, target=2, raw=True)
    assert torch.allclose(ours, naive_ablation_cam(model, model.layer, x, 2), atol=1e-5)

"""Gradient methods of pytorch-grad-cam 1.5.7 beyond the classic family: Grad-CAM element-wise, Eigen-Grad-CAM,
ShapleyCAM (gradient and Hessian-vector product) and Finer-CAM (the target class against its most similar classes)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from camlab.maps import safe_divide, spatial_dims
from camlab.methods._projection import first_component
from camlab.methods.base import ForwardPass, register
from camlab.methods.gradient import GradCAM, GradientMethod, HiResCAM
from camlab.targets import Target, class_indices, logits_of, scores


@register("gradcam_elementwise")
class GradCAMElementWise(GradientMethod):
    r"""Grad-CAM element-wise (pytorch-grad-cam's ``GradCAMElementWise``, Gildenblat and contributors, 2021,
    https://github.com/jacobgil/pytorch-grad-cam; no paper of its own). HiResCAM with each channel's product rectified
    before the sum over channels:

    .. math:: L^c = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}\Big(\frac{\partial y^c}{\partial A^k} \odot A^k\Big)\Big)

    As per-position weights: :math:`w^k_{ij} = g^k_{ij}` where :math:`g^k_{ij} A^k_{ij} > 0`, else 0, so that
    :math:`w \odot A = \mathrm{ReLU}(g \odot A)` (also what ``eigen_smooth`` projects, as in the peer). Same formula as
    pytorch-grad-cam.
    """

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        gradients = forward.gradients
        return torch.where(gradients * forward.activations > 0, gradients, torch.zeros_like(gradients))


@register("eigengradcam")
class EigenGradCAM(HiResCAM):
    r"""Eigen-Grad-CAM (pytorch-grad-cam's ``EigenGradCAM``, Gildenblat and contributors, 2021; no paper of its own):
    Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, https://arxiv.org/abs/2008.00299) applied to the class-discriminative
    products :math:`g \odot A` instead of the activations:

    .. math:: L^c = \mathrm{ReLU}\big((O - \bar O)\, v_1\big), \qquad
              O_{(ij),k} = \frac{\partial y^c}{\partial A^k_{ij}} A^k_{ij}

    with :math:`\bar O` the per-channel mean of :math:`O` over the positions and :math:`v_1` the first right singular
    vector of :math:`O - \bar O`: HiResCAM with ``eigen_smooth`` (always on here,
    :func:`camlab.methods._projection.first_component`). Centred as pytorch-grad-cam (``get_2d_projection``); unlike
    the peer, which keeps numpy's arbitrary sign, :math:`v_1`'s sign makes the map correlate positively with
    HiResCAM's :math:`\sum_k g^k \odot A^k`, so where the peer's SVD returns the other sign its map is inverted
    (pinned by a test).
    """

    principal = True

    def layer_map(self, forward: ForwardPass) -> torch.Tensor:
        return first_component(forward.gradients * forward.activations)


@register("shapleycam")
class ShapleyCAM(GradientMethod):
    r"""ShapleyCAM (Cai, "CAMs as Shapley Value-based Explainers", The Visual Computer 2025,
    https://arxiv.org/abs/2501.06261; the author's code github.com/caihuaiguang/pytorch-shapley-cam, merged into
    pytorch-grad-cam). A second-order Taylor expansion of the target score around the layer's activations gives each
    activation's Shapley value in closed form, :math:`A \odot (g - \tfrac12 H A)`; ShapleyCAM averages its factor
    over the positions, as Grad-CAM does with :math:`g`:

    .. math::
        w^c_k = \frac{1}{Z}\sum_{ij}\Big(\frac{\partial y^c}{\partial A^k_{ij}}
                - \frac12 \big(H^c A\big)^k_{ij}\Big), \qquad
        (H^c A)^k_{ij} = \sum_{l,ab} \frac{\partial^2 y^c}{\partial A^k_{ij}\,\partial A^l_{ab}} A^l_{ab}

    The Hessian-vector product :math:`H A` is exact: one more backward pass through the (``create_graph``) gradient,
    ``torch.autograd.grad(g, A, grad_outputs=A)`` (:func:`camlab.methods.forward.capture` with ``second_order``), as
    the author's code. Where the score is piecewise linear in the layer (ReLU network, logit target, no softmax)
    :math:`H A = 0` and ShapleyCAM equals Grad-CAM; the paper pairs it with its ReST target (residual softmax), which a
    callable ``target`` can supply. Same formula as pytorch-grad-cam's ``ShapleyCAM``.
    """

    uses_hessian = True

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        gradients = forward.gradients
        return (gradients - 0.5 * forward.hessian_products).mean(dim=spatial_dims(gradients))


class FinerTarget:
    r"""Finer-CAM's score (Zhang et al., CVPR 2025, the authors' ``FinerWeightedTarget``): the target class :math:`c`
    against its reference classes :math:`d \in D`, the classes whose logits are closest to :math:`y^c`
    (``reference_ranks`` (1, 2, 3): the 2nd to 4th closest, counting :math:`c` itself as the 1st; ranks beyond the
    number of classes are dropped), weighted by their softmax probabilities :math:`p_d`:

    .. math:: s = \frac{\sum_{d\in D} p_d\,(y^c - \alpha\, y^d)}{\sum_{d\in D} p_d}

    The probabilities stay in the autograd graph, as in the authors' code. ``target``: the classes :math:`c` (``None``
    = each image's top-1 class, an int, or one int per image). A model with one class has no reference: :math:`s = y^c`.
    """

    def __init__(self, target: Target = None, alpha: float = 1.0, reference_ranks: Sequence[int] = (1, 2, 3)):
        self.target, self.alpha, self.reference_ranks = target, float(alpha), tuple(reference_ranks)

    def __call__(self, output) -> torch.Tensor:
        try:
            classes = class_indices(output, self.target)
        except TypeError as error:
            raise TypeError(f"Finer-CAM compares classes, so its target must be class indices: {error}") from error
        logits = logits_of(output)
        classes = classes.to(logits.device)
        main = scores(logits, classes.tolist())
        ranks = [rank for rank in self.reference_ranks if rank < logits.shape[1]]
        if not ranks:
            return main
        distance = (logits.detach() - main.detach()[:, None]).abs()
        distance = distance.scatter(1, classes[:, None], -1.0)  # c itself first, also when another logit ties
        references = distance.argsort(dim=1, stable=True)[:, ranks]
        probabilities = torch.softmax(logits, dim=1).gather(1, references)
        differences = main[:, None] - self.alpha * logits.gather(1, references)
        return safe_divide((probabilities * differences).sum(dim=1), probabilities.sum(dim=1))


@register("finercam")
class FinerCAM(GradCAM):
    r"""Finer-CAM (Zhang, Gu, Chowdhury, Mai, Carlyn, Berger-Wolf, Su & Chao, "Finer-CAM: Spotting the Difference
    Reveals Finer Details for Visual Explanation", CVPR 2025, https://arxiv.org/abs/2501.11309; code
    github.com/Imageomics/Finer-CAM, merged into pytorch-grad-cam). Grad-CAM of the difference between the target
    class and the classes it is most easily confused with, so that features shared with them cancel:

    .. math:: \alpha^c_k = \frac{1}{Z}\sum_{ij} \frac{\partial s}{\partial A^k_{ij}}, \qquad
              s = \frac{\sum_{d\in D} p_d\,(y^c - \alpha\, y^d)}{\sum_{d\in D} p_d}

    (:class:`FinerTarget`; the paper's comparison strength :math:`\gamma` is ``alpha``, 1 by default; 0 gives
    Grad-CAM of :math:`y^c`). ``reference_ranks``: which classes, by closeness of their logit to :math:`y^c`, are the
    references (default the 2nd to 4th closest, as the authors' code). The map is Grad-CAM's (pytorch-grad-cam's
    default ``base_method``); for another base use ``target=FinerTarget(...)`` with any gradient method. Same score as
    pytorch-grad-cam's ``FinerCAM`` (which adds 1e-9 to the denominator and picks the references from an unstable
    sort; camlab's ties go to the lower class index).
    """

    def __init__(self, model: nn.Module, layer=None, *, relu: bool = True, reshape_transform=None,
                 aug_smooth: bool = False, eigen_smooth: bool = False, alpha: float = 1.0,
                 reference_ranks: Sequence[int] = (1, 2, 3)):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform, aug_smooth=aug_smooth,
                         eigen_smooth=eigen_smooth)
        if not reference_ranks or any(int(rank) != rank or rank < 1 for rank in reference_ranks):
            raise ValueError(f"reference_ranks must be positive integers (1 = the class closest to the target), got "
                             f"{reference_ranks!r}")
        self.alpha, self.reference_ranks = float(alpha), tuple(int(rank) for rank in reference_ranks)

    def forward_pass(self, x: torch.Tensor, target: Target) -> ForwardPass:
        return super().forward_pass(x, FinerTarget(target, self.alpha, self.reference_ranks))

"""Score-CAM's averaged variants: SS-CAM (noisy masks) and IS-CAM (scaled masks). Each overrides one step of
:class:`~camlab.methods.perturbation.ScoreCAM`, ``_mask_values``: the score of a channel's mask becomes the mean
score over several perturbed copies of that mask; everything else (masks, batching, the BatchNorm-folded copy, the two
weightings, targets, constant channels) is Score-CAM's."""
from __future__ import annotations

import torch
from torch import nn

from camlab.methods.base import register
from camlab.methods.perturbation import ScoreCAM


class _AveragedScoreCAM(ScoreCAM):
    """Score-CAM with each mask's score averaged over ``n_samples`` perturbed copies of the mask."""

    def __init__(self, model: nn.Module, layer=None, *, relu: bool = True, reshape_transform=None,
                 aug_smooth: bool = False, eigen_smooth: bool = False,
                 batch_size: int | None = None, progress: bool = True, weighting: str = "probability",
                 fold: bool = True, n_samples: int = 10):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform, aug_smooth=aug_smooth,
                         eigen_smooth=eigen_smooth, batch_size=batch_size, progress=progress, weighting=weighting,
                         fold=fold)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        self.n_samples = n_samples

    @property
    def passes_per_mask(self) -> int:
        return self.n_samples

    def _transforms(self, activation: torch.Tensor, channels: torch.Tensor, image: torch.Tensor):
        """One ``transform(masks, start, stop)`` per sample (see ``ScoreCAM._masked_scores``)."""
        raise NotImplementedError

    def _mask_values(self, model, image, activation, channels, read, bar) -> torch.Tensor:
        total = None
        for transform in self._transforms(activation, channels, image):
            values = self._masked_scores(model, image, activation[channels], read, bar, transform)
            total = values if total is None else total + values
        return total / self.n_samples

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, n_samples={self.n_samples})"


@register("sscam")
class SSCAM(_AveragedScoreCAM):
    r"""SS-CAM (Wang, Naidu, Michael & Kundu, "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization",
    arXiv 2020, https://arxiv.org/abs/2006.14255), the variant that smooths in feature space ("SS-CAM(1)"): each
    normalised mask :math:`H_k` of Score-CAM (see :class:`~camlab.methods.perturbation.ScoreCAM`) is perturbed
    ``n_samples`` = :math:`N` times with Gaussian noise at the input's resolution, and the channel's score is the mean
    over the noisy masks,

    .. math::
        S^c_k = \frac{1}{N} \sum_{i=1}^{N} f^c\big(x \odot (H_k + \delta_i)\big), \qquad
        \delta_i \sim \mathcal N(0, \sigma^2), \qquad L^c = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big)

    with :math:`\alpha^c_k` read from :math:`S^c_k` by Score-CAM's ``weighting``: ``"probability"`` (default, the
    mean class probability) or ``"paper"`` (the target's logit, softmax over channels; the baseline
    :math:`f^c(X_b)` of the paper's channel-wise increase of confidence cancels in that softmax). :math:`\sigma` =
    ``sigma`` (2, the paper's value, on masks that lie in [0, 1]). The noise comes from a local
    ``torch.Generator`` seeded with ``seed`` for each image, drawn as one (K,H,W) tensor per sample for all K
    channels: the global RNG is never touched, the same call gives the same map, and an image's map does not depend
    on the other images in the batch. Channels with identical activations share their noisy passes.

    Peer: torchcam's ``SSCAM`` is the ``"paper"`` weighting with the same noise (one (N,K,H,W) draw per sample, so
    for one image and ``torch.manual_seed(seed)`` it draws the very numbers camlab draws), but it min-max
    normalises the activation at the layer's resolution before upsampling (camlab, as Score-CAM's paper, after) and
    keeps constant channels (a mask of 0 plus noise) in the softmax; camlab gives them weight 0, as Score-CAM.
    Cost: ``n_samples`` masked passes per channel (torchcam's default is 35).
    """

    def __init__(self, model: nn.Module, layer=None, *, relu: bool = True, reshape_transform=None,
                 aug_smooth: bool = False, eigen_smooth: bool = False,
                 batch_size: int | None = None, progress: bool = True, weighting: str = "probability",
                 fold: bool = True, n_samples: int = 10, sigma: float = 2.0, seed: int = 0):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform, aug_smooth=aug_smooth,
                         eigen_smooth=eigen_smooth, batch_size=batch_size, progress=progress, weighting=weighting,
                         fold=fold, n_samples=n_samples)
        if not sigma >= 0:
            raise ValueError(f"sigma must be a non-negative number, got {sigma!r}")
        self.sigma, self.seed = float(sigma), seed

    def _transforms(self, activation, channels, image):
        generator = torch.Generator(device=image.device).manual_seed(self.seed)
        shape = (activation.shape[0], *image.shape[2:])
        for _ in range(self.n_samples):
            noise = torch.randn(shape, generator=generator, device=image.device)[channels] * self.sigma

            def add_noise(masks, start, stop, noise=noise):
                return masks + noise[start:stop].to(masks.dtype)

            yield add_noise


@register("iscam")
class ISCAM(_AveragedScoreCAM):
    r"""IS-CAM (Naidu, Ghosh, Maurya, Nayak K & Kundu, "IS-CAM: Integrated Score-CAM for axiomatic-based
    explanations", arXiv 2020, https://arxiv.org/abs/2010.03023): Score-CAM's score integrated along a path of
    scaled masks. Algorithm 1 of the paper accumulates the mask over :math:`N` = ``n_samples`` steps,
    :math:`M \leftarrow M + \tfrac{i}{N} H_k`, and averages the scores of the accumulated masks, so the
    :math:`i`-th masked input is :math:`x \odot c_i H_k` with :math:`c_i = \sum_{j=1}^{i} j / N`:

    .. math::
        S^c_k = \frac{1}{N} \sum_{i=1}^{N} f^c\big(x \odot c_i H_k\big), \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big)

    (:math:`c_N = (N+1)/2`: the last masks amplify the input), with :math:`H_k` Score-CAM's normalised mask and
    :math:`\alpha^c_k` read from :math:`S^c_k` by Score-CAM's ``weighting`` (``"paper"``: the logit, softmax over
    channels, the baseline cancelling as in Score-CAM; ``"probability"``, default: the mean class probability).
    Deterministic.

    Peer: torchcam's ``ISCAM`` uses the same coefficients :math:`c_i` and the ``"paper"`` weighting; it min-max
    normalises at the layer's resolution before upsampling and keeps constant channels in the softmax (camlab: after
    upsampling, and weight 0, as Score-CAM). Cost: ``n_samples`` masked passes per distinct channel.
    """

    def _transforms(self, activation, channels, image):
        coefficient = 0.0
        for step in range(1, self.n_samples + 1):
            coefficient += step / self.n_samples

            def scaled(masks, start, stop, coefficient=coefficient):
                return masks * coefficient

            yield scaled

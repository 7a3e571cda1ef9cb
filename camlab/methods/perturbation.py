"""Gradient-free methods that perturb the input or the layer and watch the score: Score-CAM, Ablation-CAM and
occlusion sensitivity. All run their extra forward passes in batches under ``torch.inference_mode()`` with a tqdm
progress bar (``progress=False`` turns it off)."""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from camlab.ablation import ChannelAblation
from camlab.maps import safe_divide, upsample
from camlab.methods.base import Explainer, ForwardPass, LayerMethod, register
from camlab.targets import Target
from camlab.targets import is_score_function as _is_callable_target
from camlab.targets import per_image, scores


def _per_image_target(forward: ForwardPass, index: int):
    """The target for image ``index`` alone: its class index, or the caller's callable."""
    return forward.per_image_targets()[index]


class BatchedPerturbation(LayerMethod):
    """A gradient-free layer method that scores perturbed copies in batches of ``batch_size``, with a progress bar
    (``progress``)."""

    uses_gradients = False

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True,
                 batch_size: int = 64, progress: bool = True):
        super().__init__(model, layer, relu=relu)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size, self.progress = batch_size, progress


@register("scorecam")
class ScoreCAM(BatchedPerturbation):
    r"""Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
    CVPR workshops 2020, https://arxiv.org/abs/1910.01279), Algorithm 1 as in the authors' code
    (github.com/haofanwang/Score-CAM, ``cam/scorecam.py``):

    .. math::
        M_k = \frac{\mathrm{up}(A^k) - \min \mathrm{up}(A^k)}{\max \mathrm{up}(A^k) - \min \mathrm{up}(A^k)}, \qquad
        w^c_k = \mathrm{softmax}\big(f(x \odot M_k)\big)_c, \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A^k\Big)

    ``up`` is bilinear upsampling to the input (``align_corners=False``); ``x`` is the model's input as given, i.e.
    the *normalised* tensor, which is what the authors' code multiplies. A channel whose upsampled activation is
    constant (max = min, e.g. all zero after a ReLU) is skipped by the authors' code (``continue``: it would divide
    0 by 0), so its weight is 0 here too and no forward pass is spent on it. Channels with identical activations
    share one forward pass. With a callable ``target`` the weight is the callable's value on the masked input's
    logits (so put a softmax in it if you want probabilities). Differences to the authors' code: the map is summed
    and rectified at the layer's resolution and then upsampled (like every camlab method), where the authors upsample
    each channel first; batches of images are supported.

    Peers: pytorch-grad-cam's ``ScoreCAM`` takes a softmax *over channels* of the raw target logits of the masked
    inputs and upsamples with ``align_corners=True``; torchcam's subtracts the unmasked input's score. Their maps
    differ from the paper's and from each other.

    ``batch_size`` masked inputs go through the model at once (64 was fastest on a 2-core CPU for
    efficientnet_lite0 at 224x224), in channels-last memory format (about 25% faster on CPU; the model is not
    touched, and the logits differ from the contiguous layout only by float rounding, ~1e-6); ``progress`` shows a
    tqdm bar.
    """

    uses_gradients = False

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        x, activations = forward.inputs.detach(), forward.activations
        n, k = activations.shape[:2]
        size = tuple(x.shape[-2:])
        weights = torch.zeros(n, k, dtype=activations.dtype, device=activations.device)
        work = []  # per image: (channel indices of unique non-constant maps, inverse index)
        for i in range(n):
            flat = activations[i].flatten(1)
            varying = (flat.amax(dim=1) > flat.amin(dim=1)).nonzero()[:, 0]
            # upsampling is a convex combination, so a constant channel stays constant and a varying one varies
            unique, inverse = torch.unique(flat[varying], dim=0, return_inverse=True)
            first = torch.full((len(unique),), -1, dtype=torch.long, device=flat.device)
            first.scatter_reduce_(0, inverse, torch.arange(len(varying), device=flat.device), reduce="amin",
                                  include_self=False)
            work.append((varying, varying[first], inverse))
        total = sum(len(representatives) for _, representatives, _ in work)
        with torch.inference_mode(), tqdm(total=total, desc="Score-CAM", unit="mask", disable=not self.progress,
                                          leave=False) as bar:
            for i, (varying, representatives, inverse) in enumerate(work):
                target = _per_image_target(forward, i)
                unique_weights = torch.empty(len(representatives), dtype=weights.dtype, device=weights.device)
                for start in range(0, len(representatives), self.batch_size):
                    channels = representatives[start:start + self.batch_size]
                    masks = upsample(activations[i, channels][None], size)[0]
                    low = masks.flatten(1).amin(dim=1)[:, None, None]
                    high = masks.flatten(1).amax(dim=1)[:, None, None]
                    masks = (masks - low) / (high - low)
                    masked = (x[i:i + 1] * masks[:, None]).contiguous(memory_format=torch.channels_last)
                    logits = self.model(masked)
                    if _is_callable_target(target):
                        unique_weights[start:start + len(channels)] = scores(logits, target).to(weights.dtype)
                    else:
                        unique_weights[start:start + len(channels)] = logits.softmax(dim=1)[:, target]
                    bar.update(len(channels))
                weights[i, varying] = unique_weights[inverse]
        return weights


@register("ablationcam")
class AblationCAM(BatchedPerturbation):
    r"""Ablation-CAM (Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020,
    https://openaccess.thecvf.com/content_WACV_2020/html/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.html):

    .. math::
        w^c_k = \frac{y^c - y^c_k}{y^c}, \qquad L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A^k\Big)

    with :math:`y^c_k` the target score when channel :math:`k` of the layer is set to zero. Where :math:`y^c = 0`
    the weight is :math:`y^c - y^c_k` (no division by zero). pytorch-grad-cam implements the same formula but,
    when the layer has negative activations, ablates with ``min - 1e7`` instead of zero.

    The ablated scores come from :class:`camlab.ablation.ChannelAblation` (batches of ``batch_size`` copies; only
    the network above the layer runs at the batch size where the model broadcasts, see :mod:`camlab.ablation`).
    """

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        n, k = forward.activations.shape[:2]
        targets = forward.per_image_targets()
        with tqdm(total=n * k, desc="Ablation-CAM", unit="channel", disable=not self.progress, leave=False) as bar:
            ablation = ChannelAblation(self.model, self.layer, self.batch_size, bar)
            drops = [forward.scores[i] - ablation.scores(forward.inputs[i:i + 1].detach(), forward.activations[i:i + 1],
                                                         targets[i], forward.scores[i]) for i in range(n)]
        drops = torch.stack(drops).to(forward.activations.dtype)
        original = forward.scores[:, None].to(drops.dtype)
        return torch.where(original != 0, safe_divide(drops, original), drops)


@register("occlusion")
class Occlusion(Explainer):
    r"""Occlusion sensitivity (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
    https://arxiv.org/abs/1311.2901), the reference the Grad-CAM paper correlates its maps with.

    A ``patch`` x ``patch`` square of value ``fill`` (0 = the dataset mean for a normalised input) slides over the
    input with step ``stride``; at each position the drop of the target score :math:`y^c(x) - y^c(x_{\text{occluded}})`
    is recorded. The score is the target's *logit* (the same score the gradient methods explain); pass
    ``target=lambda logits: logits.softmax(1)[:, c]`` for the probability drop. Each pixel gets the mean drop over
    the patches that cover it (as Captum's ``Occlusion``); the last row and column of patches are shifted to end at
    the border, so every pixel is covered. The map is at the input resolution, (N,H,W); with ``relu=True`` (default)
    only drops are kept, ``relu=False`` keeps increases as negative values (scaled to [-1, 1]).
    """

    def __init__(self, model: nn.Module, *, patch: int = 32, stride: int = 16, fill: float = 0.0,
                 batch_size: int = 32, progress: bool = True, relu: bool = True):
        super().__init__(model)
        if patch < 1 or stride < 1 or batch_size < 1:
            raise ValueError(f"patch, stride and batch_size must be positive, got {patch}, {stride}, {batch_size}")
        self.patch, self.stride, self.fill = patch, stride, fill
        self.batch_size, self.progress, self.relu = batch_size, progress, relu

    @staticmethod
    def _starts(length: int, patch: int, stride: int) -> list[int]:
        if patch >= length:
            return [0]
        starts = list(range(0, length - patch + 1, stride))
        if starts[-1] != length - patch:
            starts.append(length - patch)
        return starts

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        n, _, height, width = x.shape
        ph, pw = min(self.patch, height), min(self.patch, width)
        positions = [(top, left) for top in self._starts(height, ph, self.stride)
                     for left in self._starts(width, pw, self.stride)]
        with torch.inference_mode():
            x = x.detach()
            logits = self.model(x)
            original = scores(logits, target)
            targets = per_image(logits, target)
            total = torch.zeros(n, height, width, dtype=x.dtype, device=x.device)
            count = torch.zeros(height, width, dtype=x.dtype, device=x.device)
            for top, left in positions:
                count[top:top + ph, left:left + pw] += 1
            with tqdm(total=n * len(positions), desc="Occlusion", unit="patch", disable=not self.progress,
                      leave=False) as bar:
                for i in range(n):
                    image_target = targets[i]
                    for start in range(0, len(positions), self.batch_size):
                        chunk = positions[start:start + self.batch_size]
                        batch = x[i:i + 1].repeat(len(chunk), 1, 1, 1)
                        for row, (top, left) in enumerate(chunk):
                            batch[row, :, top:top + ph, left:left + pw] = self.fill
                        drops = original[i] - scores(self.model(batch), image_target)
                        for row, (top, left) in enumerate(chunk):
                            total[i, top:top + ph, left:left + pw] += drops[row]
                        bar.update(len(chunk))
        return total / count

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, patch={self.patch}, stride={self.stride})"

"""Gradient-free methods that perturb the input or the layer and watch the score: Score-CAM, Ablation-CAM and
occlusion sensitivity. All run their extra forward passes in batches under ``torch.inference_mode()`` with a tqdm
progress bar (``progress=False`` turns it off)."""
from __future__ import annotations

import functools
import weakref

import torch
from torch import nn
from tqdm.auto import tqdm

from camlab.ablation import ChannelAblation
from camlab.maps import safe_divide, upsample
from camlab.methods._calibrate import cache_key, run_in_batches
from camlab.methods._fold import folded_copy
from camlab.hooks import preserved_state
from camlab.methods.base import Explainer, ForwardPass, LayerMethod, register
from camlab.targets import Target, logits_of, per_image, probabilities_of, scores

#: models that fail on channels-last inputs: Score-CAM runs their masked batches contiguous
_CONTIGUOUS_ONLY: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()


class BatchedPerturbation(LayerMethod):
    """A gradient-free layer method that scores perturbed copies in batches of ``batch_size``, with a progress bar
    (``progress``)."""

    uses_gradients = False

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True,
                 reshape_transform=None, aug_smooth: bool = False, eigen_smooth: bool = False,
                 batch_size: int = 64, progress: bool = True):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform,
                         aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size, self.progress = batch_size, progress


@register("scorecam")
class ScoreCAM(BatchedPerturbation):
    r"""Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
    CVPR workshops 2020, https://arxiv.org/abs/1910.01279). Each channel :math:`A^k` of the layer becomes a mask

    .. math::
        H_k = \frac{\mathrm{up}(A^k) - \min \mathrm{up}(A^k)}{\max \mathrm{up}(A^k) - \min \mathrm{up}(A^k)}, \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big)

    (``up`` = bilinear upsampling to the input, ``align_corners=False``), the masked input :math:`x \odot H_k` goes
    through the model, and its score gives the channel's weight :math:`\alpha^c_k`. The method exists in two published
    forms, chosen with ``weighting``:

    * ``"probability"`` (default): the authors' released code (github.com/haofanwang/Score-CAM, ``cam/scorecam.py``)
      and arXiv v1: the class probability of the masked input, no baseline, no normalisation over channels,

      .. math:: \alpha^c_k = \mathrm{softmax}\big(f(x \odot H_k)\big)_c

      For a model with a single output (a binary classifier's one logit) the softmax over one logit would be 1 for
      every channel, so the probability is the sigmoid :math:`\sigma(f(x \odot H_k))` instead.
    * ``"paper"``: Algorithm 1 of the paper (arXiv v2 / CVPRW 2020): the channel-wise increase of confidence over a
      baseline input :math:`X_b`, normalised by a softmax *over channels*,

      .. math:: S^c_k = f^c(x \odot H_k) - f^c(X_b), \qquad \alpha^c_k = \frac{\exp S^c_k}{\sum_j \exp S^c_j}

      with :math:`f^c` the target's logit. The baseline (a black image in the paper's experiments) enters every
      :math:`S^c_k` as the same constant, and a softmax does not change when a constant is added to all its
      arguments, so :math:`\alpha^c` does not depend on :math:`X_b` at all; no baseline pass is run.

    The authors answered that the two are "the same thing" with a black baseline (issue #17, 2021-07-20;
    issues #6 and #20: they "directly set f(X_b) to zero"); they are not: the probability form gives each channel a
    weight in [0, 1] on its own, the paper's form makes channels compete (weights sum to 1, and with logits of a few
    units the largest channel dominates). Default: ``"probability"``, the form behind the authors' code and
    experiments and the one the course derives (its weights do not collapse onto one channel when a layer has
    hundreds of channels).

    Targets (:mod:`camlab.targets`): a target object with a ``probability`` gives that probability as the weight in
    the ``"probability"`` form and its score as :math:`f^c` in the ``"paper"`` form: :class:`~camlab.targets.BinaryTarget`
    :math:`\sigma(\pm z)` and :math:`\pm z`, :class:`~camlab.targets.SegmentationTarget` the class's mean
    probability over the mask and its summed scores. Any other callable's value on the masked input's output is the
    score in both forms: the weight itself for ``"probability"``, :math:`f^c` for ``"paper"``. For a single-logit
    model the paper's :math:`f^c` is the logit :math:`z` for the positive class (index 0, ``BinaryTarget()``) and
    :math:`-z` for the negative one (``BinaryTarget(positive=False)``): the class's log-odds, i.e. its logit minus the
    other's in the equivalent two-class model with logits :math:`(0, z)`; that difference is all the model defines
    (a softmax does not change when every logit moves by the same amount). Image i's target scores image i's masked
    copies only; a single callable given for several images must be row-wise (checked, see
    :func:`camlab.targets.per_image`). A channel whose upsampled activation is constant (max = min,
    e.g. all zero after a ReLU) has no mask (0/0); the authors' code skips it (``continue``), so its weight is 0 here
    and it takes no part in the softmax over channels. Channels with identical activations share one forward pass
    (their weights are equal; each counts in the softmax). The map is summed and rectified at the layer's
    resolution and then upsampled (like every camlab method); batches of images are supported.

    Peers: pytorch-grad-cam's ``ScoreCAM`` is the ``"paper"`` form with raw logits, but it upsamples with
    ``align_corners=True``, divides by ``max - min + 1e-8`` and keeps constant channels (mask 0, i.e. the score of
    an all-zero input, inside the softmax). torchcam's subtracts the *unmasked* input's score before its softmax over
    channels, which, by the same shift invariance, is again the ``"paper"`` form.

    Speed: one inference pass per distinct mask is the physical limit, and camlab works towards it. The masked
    inputs run through a private copy of the model in which each eval-mode BatchNorm is folded into the
    convolution before it (``fold=True``, see :mod:`camlab.methods._fold`; the copy's output is checked against
    the model's on the first image, and the model itself is used when they differ or nothing can be folded), in
    channels-last memory format. ``batch_size=None`` (default) chooses the batch size by timing the first batches
    of the real work (:mod:`camlab.methods._calibrate`) and remembers it per model, device and input shape; an int
    fixes it. ``progress`` shows a tqdm bar. The model you pass is never modified.
    """

    uses_gradients = False
    volumetric = True
    WEIGHTINGS = ("probability", "paper")

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True,
                 reshape_transform=None, aug_smooth: bool = False, eigen_smooth: bool = False,
                 batch_size: int | None = None, progress: bool = True,
                 weighting: str = "probability", fold: bool = True):
        # the base validates a fixed batch size; None (measure it) is ScoreCAM's own
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform,
                         aug_smooth=aug_smooth, eigen_smooth=eigen_smooth,
                         batch_size=1 if batch_size is None else batch_size,
                         progress=progress)
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(map(repr, self.WEIGHTINGS))}, got {weighting!r}")
        self.batch_size, self.weighting, self.fold = batch_size, weighting, fold

    @staticmethod
    def _distinct_channels(activation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For one image's (K,h,w) activations: the non-constant channels, one representative channel per distinct
        map among them, and the index of each non-constant channel's representative."""
        flat = activation.flatten(1)
        varying = (flat.amax(dim=1) > flat.amin(dim=1)).nonzero()[:, 0]
        # upsampling is a convex combination, so a constant channel stays constant and a varying one varies
        unique, inverse = torch.unique(flat[varying], dim=0, return_inverse=True)
        first = torch.full((len(unique),), -1, dtype=torch.long, device=flat.device)
        first.scatter_reduce_(0, inverse, torch.arange(len(varying), device=flat.device), reduce="amin",
                              include_self=False)
        return varying, varying[first], inverse

    def _score(self, output, target) -> torch.Tensor:
        """The per-mask score: for ``"paper"`` the target's logit (a callable's value), else its probability
        (:func:`camlab.targets.probabilities_of`: softmax, the sigmoid of a single logit, a target object's
        ``probability``, or a plain callable's value)."""
        if self.weighting == "paper":
            return scores(output, target)
        return probabilities_of(output, target)

    def _scoring_model(self, forward: ForwardPass) -> nn.Module:
        """The model the masked inputs run through: the BatchNorm-folded private copy when allowed and faithful."""
        if self.fold and isinstance(forward.output, torch.Tensor):
            example = forward.inputs[:1].detach()
            twin = folded_copy(self.model, example, forward.output[:1])
            if twin is not None:
                return twin
        return self.model

    def _run_masked(self, model: nn.Module, masked: torch.Tensor):
        """``model(masked)`` in channels-last memory format (faster 2-D convolutions), or contiguous for a model that
        fails on channels-last inputs (e.g. one calling ``.view`` on a feature map); decided on the first failure and
        remembered per model. A model that also fails on the contiguous batch raises that error."""
        if masked.ndim == 4 and self.model not in _CONTIGUOUS_ONLY:
            try:
                return model(masked.contiguous(memory_format=torch.channels_last))
            except Exception:  # noqa: BLE001 - retried below; a real error of the model surfaces there
                output = model(masked.contiguous())
                _CONTIGUOUS_ONLY[self.model] = True
                return output
        return model(masked.contiguous())

    def _masked_scores(self, model: nn.Module, image: torch.Tensor, channels: torch.Tensor, read,
                       bar, transform=None) -> torch.Tensor:
        """``read(output)`` of ``image`` (1,C,H,W) masked by each of ``channels`` (M,h,w), in batches: (M,) scores or
        (M, classes) logits (3-D: (1,C,D,H,W) and (M,d,h,w), upsampled trilinearly). ``transform(masks, start,
        stop)``, when given, changes the normalised masks of channels ``start:stop`` before they multiply the image
        (SS-CAM's noise, IS-CAM's scaling)."""
        size = tuple(image.shape[2:])
        ones = [1] * len(size)
        result: list[torch.Tensor] = []

        def run(start: int, stop: int) -> None:
            masks = upsample(channels[start:stop][None], size)[0]
            low = masks.flatten(1).amin(dim=1).view(-1, *ones)
            high = masks.flatten(1).amax(dim=1).view(-1, *ones)
            masks = ((masks - low) / (high - low)).to(image.dtype)
            if transform is not None:
                masks = transform(masks, start, stop)
            result.append(read(self._run_masked(model, image * masks[:, None])).to(channels.dtype))
            bar.update(stop - start)

        if self.batch_size is not None:
            for start in range(0, len(channels), self.batch_size):
                run(start, min(start + self.batch_size, len(channels)))
        else:
            largest = 256 if image.device.type == "cuda" else 64
            run_in_batches(len(channels), run, self.model, cache_key(image) + (model is self.model,), image.device,
                           largest=largest)
        return torch.cat(result)

    def _channel_values(self, forward: ForwardPass, reads: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each image i: its varying channels (those with a mask) and ``reads[i](output)`` on each one's masked
        input, one masked pass per distinct mask (channels with identical maps share it)."""
        x, activations = forward.inputs.detach(), forward.activations
        work = [self._distinct_channels(activations[i]) for i in range(len(activations))]
        total = sum(len(representatives) for _, representatives, _ in work) * self.passes_per_mask
        values = []
        with torch.inference_mode(), tqdm(total=total, desc="Score-CAM", unit="mask", disable=not self.progress,
                                          leave=False) as bar:
            model = self._scoring_model(forward) if total else self.model
            for i, (varying, representatives, inverse) in enumerate(work):
                if not len(varying):
                    values.append((varying, None))
                    continue
                unique = self._mask_values(model, x[i:i + 1], activations[i], representatives, reads[i], bar)
                values.append((varying, unique[inverse]))
        return values

    #: masked passes per distinct mask (SS-CAM and IS-CAM run several and average them)
    passes_per_mask = 1

    def _mask_values(self, model: nn.Module, image: torch.Tensor, activation: torch.Tensor,
                     channels: torch.Tensor, read, bar) -> torch.Tensor:
        """``read`` of ``image`` masked by each channel of ``activation`` (K,h,w) listed in ``channels``: one pass per
        mask here; the step SS-CAM and IS-CAM override to average several perturbed passes."""
        return self._masked_scores(model, image, activation[channels], read, bar)

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        activations = forward.activations
        weights = torch.zeros(activations.shape[:2], dtype=activations.dtype, device=activations.device)
        # image i's target, scored on image i's masked copies only
        reads = [functools.partial(self._score, target=target) for target in forward.per_image_targets()]
        for i, (varying, channel_scores) in enumerate(self._channel_values(forward, reads)):
            if channel_scores is not None:
                weights[i, varying] = channel_scores.softmax(dim=0) if self.weighting == "paper" else channel_scores
        return weights

    def masked_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The model's logits on every channel's masked input, :math:`f(x \odot H_k)`, (N,K,classes), and which
        channels have a mask, (N,K) bool (the rows of constant channels are 0). Both weightings are read from it
        for class :math:`c`: ``"probability"`` = ``logits.softmax(-1)[..., c]``; ``"paper"`` = the softmax over
        the varying channels of ``logits[..., c]``. It runs the same masked passes as the map (one per distinct
        mask, on the BatchNorm-folded copy, at the measured batch size), for a model whose output holds class
        logits (:func:`camlab.targets.logits_of`); the model is restored afterwards like after any call."""
        x = self.checked_input(x)
        with preserved_state(self.model):
            forward = self.forward_pass(x, None)
            values = self._channel_values(forward, [logits_of] * len(x))
        n, k = forward.activations.shape[:2]
        logits = torch.zeros(n, k, forward.logits.shape[1], dtype=forward.activations.dtype, device=x.device)
        varying = torch.zeros(n, k, dtype=torch.bool, device=x.device)
        for i, (channels, channel_logits) in enumerate(values):
            varying[i, channels] = True
            if channel_logits is not None:
                logits[i, channels] = channel_logits
        return logits, varying

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={type(self.model).__name__}, layer={self.layer_name!r}, "
                f"weighting={self.weighting!r})")


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
        activations = forward.activations.to(forward.inputs.dtype)  # back to a float16 model's dtype
        with tqdm(total=n * k, desc="Ablation-CAM", unit="channel", disable=not self.progress, leave=False) as bar:
            ablation = ChannelAblation(self.model, self.layer, self.batch_size, bar, forward.layers[0].layout)
            drops = [forward.scores[i] - ablation.scores(forward.inputs[i:i + 1].detach(), activations[i:i + 1],
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
            output = self.model(x)
            original = scores(output, target, n=n)
            targets = per_image(output, target)
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

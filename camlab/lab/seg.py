r"""``lab_seg``: a tiny semantic segmentation network on lab scenes, with torchvision's output layout.

Like torchvision's segmentation models (``fcn_resnet50``, ``deeplabv3_*``), :class:`LabSegNet` has a ``backbone``
and a ``classifier`` and returns a dict ``{"out": logits}`` whose logits are (N, K, H, W) at the *input*
resolution (the classifier's (N, K, 16, 16) output upsampled bilinearly). K = 6 classes, :data:`SEG_CLASSES`:
index 0 is the background (as in torchvision's VOC models), index 1 + c is lab class c. So code written for
torchvision's segmentation models runs unchanged, e.g. ``model(x)["out"].argmax(1)`` is the predicted label map.

* ``backbone``: the lab's conv trunk (:func:`camlab.lab.architectures.conv_features`, width 8): (N, 32, 16, 16).
* ``classifier``: a DeepLabV3-style head at toy scale: the features concatenated with their global average
  (broadcast back to 16x16; DeepLabV3's image-pooling branch), conv-BN-ReLU, then a 1x1 conv to K logits.
  The global branch tells every pixel which shape the scene holds; the local one where its edges are.

Training (:func:`train_segmenter`) minimises the per-pixel cross-entropy against ``make_scenes``' masks (the
main object's pixels carry its class, every other pixel is background), on fresh seeded scenes every epoch.
:func:`segmentation_scores` measures pixel accuracy and mean IoU on fixed held-out scenes.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from camlab.hooks import preserved_state
from camlab.progress import progress_bar

from .architectures import conv_features
from .scenes import LAB_CLASSES, Scenes, make_scenes, normalise

#: lab_seg's classes: background first, then the lab's shapes
SEG_CLASSES: tuple[str, ...] = ("background",) + LAB_CLASSES
SEG_TEST_SEED = 1_000_003 + 11  # held-out scenes (training uses seeds < 10**6)


class ImagePoolingHead(nn.Module):
    """[features, global average of features] -> conv3x3-BN-ReLU -> conv1x1 to ``num_classes`` logits."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.out = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(features).expand_as(features)
        return self.out(self.relu(self.bn(self.conv(torch.cat([features, pooled], 1)))))


class LabSegNet(nn.Module):
    """backbone -> classifier -> bilinear upsampling to the input size; returns ``{"out": (N, K, H, W)}``."""

    def __init__(self, num_classes: int = len(SEG_CLASSES), width: int = 8):
        super().__init__()
        self.backbone = conv_features(width, pools=2)
        self.classifier = ImagePoolingHead(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        logits = self.classifier(self.backbone(x))
        return OrderedDict(out=F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False))


def label_maps(scenes: Scenes) -> torch.Tensor:
    """(N, H, W) long per-pixel targets: 1 + the scene's label on its mask, 0 (background) elsewhere."""
    return torch.where(scenes.masks, scenes.labels.view(-1, 1, 1) + 1, torch.zeros_like(scenes.labels).view(-1, 1, 1))


def seg_test_scenes(n: int = 500) -> Scenes:
    """The fixed held-out scenes lab_seg is measured on."""
    return make_scenes(n, seed=SEG_TEST_SEED)


@torch.no_grad()
def segmentation_scores(model: nn.Module, scenes: Scenes, batch_size: int = 250) -> dict:
    r"""Pixel accuracy and mean IoU over :data:`SEG_CLASSES`, from one confusion matrix over all pixels of all
    scenes: :math:`\mathrm{IoU}_k = TP_k / (TP_k + FP_k + FN_k)` (the PASCAL VOC / torchvision reference metric);
    a class absent from both truth and prediction has no IoU (NaN) and is left out of the mean. Returns
    ``{"test_accuracy": pixel accuracy, "mean_iou", "iou": per-class list}``."""
    k = len(SEG_CLASSES)
    confusion = torch.zeros(k, k, dtype=torch.long)
    truth_all = label_maps(scenes)
    with preserved_state(model):
        for i in range(0, len(scenes), batch_size):
            pred = model(normalise(scenes.images[i:i + batch_size]))["out"].argmax(1)
            truth = truth_all[i:i + batch_size]
            confusion += torch.bincount((truth * k + pred).flatten(), minlength=k * k).view(k, k)
    tp = confusion.diag().double()
    union = (confusion.sum(0) + confusion.sum(1)).double() - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.nan)  # a class nowhere in truth or prediction: NaN
    return {"test_accuracy": float(tp.sum() / confusion.sum()), "mean_iou": float(iou.nanmean()),
            "iou": [round(float(v), 4) for v in iou]}


def train_segmenter(model: LabSegNet, *, seed: int = 0, epochs: int = 6, n_train: int = 4000, lr: float = 3e-3,
                    batch_size: int = 64, progress: bool = True) -> dict:
    """Seeded training: Adam with a one-cycle schedule, per-pixel cross-entropy, fresh scenes each epoch (seed
    ``seed * 1000 + epoch``). Returns :func:`segmentation_scores` on :func:`seg_test_scenes`."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((n_train + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.25)
    g = torch.Generator().manual_seed(seed)
    for epoch in progress_bar(range(epochs), progress, desc="train lab_seg", unit="epoch"):
        data = make_scenes(n_train, seed=seed * 1000 + epoch)
        x_all, y_all = normalise(data.images), label_maps(data)
        model.train()
        for idx in torch.randperm(n_train, generator=g).split(batch_size):
            loss = F.cross_entropy(model(x_all[idx])["out"], y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return segmentation_scores(model, seg_test_scenes())

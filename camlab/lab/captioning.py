r"""A tiny image captioner on lab scenes: a CNN encoder, a GRU decoder with soft attention, a phrase word by word.

Scenes hold two objects of distinct shapes and colours (:func:`camlab.lab.vqa.make_vqa_scenes`). The caption
names them from left to right (by the centre of their boxes) as ``"<colour> <shape> left <colour> <shape> right"``,
for example ``"red circle left blue square right"``, then ``<end>``.

The model (Show, Attend and Tell; Xu et al., ICML 2015, at toy scale):

* ``encoder``: :class:`camlab.lab.vqa.ImageEncoder` - ``lab_gap``'s conv trunk (frozen while training) plus a
  colour branch, merged by a 1x1 conv into ``encoder.features``, the (N, 64, 16, 16) map of the encoder's last
  conv layer (the layer to explain).
* ``decoder``: at step t, attention weights :math:`\alpha_t = \mathrm{softmax}_{ij}(k_{ij} \cdot W_q h_{t-1})`
  over positions (keys :math:`k_{ij}` from the features plus x/y coordinates, so "left" can be found), the
  context :math:`z_t = \sum_{ij} \alpha_{t,ij} a_{ij}`, :math:`h_t = \mathrm{GRU}([E w_{t-1}; z_t], h_{t-1})`
  and word logits :math:`W_o [h_t; z_t; c_t]`, where :math:`c_t = \sum_{ij} \alpha_{t,ij} \mathrm{rgb}_{ij}` is the
  mean input colour where the decoder attends (as ``lab_vqa`` reads it: colour words are learned far faster).

Training (:func:`train_captioner`) supervises the attention: each word's attention is pushed onto the object it is
about (:func:`caption_loss`). Without that term the attention stays diffuse and colour words stay at chance.
Grad-CAM never sees the attention weights directly: it weights the channels of ``encoder.features`` by the
gradient of one word's logit.

Explainers call ``model(x)`` with images only, so :meth:`CaptionModel.step` fixes a decoding step::

    step = captioner.step(1)                              # the logits of the 2nd word (the left object's shape)
    cam = camlab.GradCAM(step, layer="encoder.features")
    heat = cam(x, target=None)                           # explains the word the greedy decoder emits there
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camlab.hooks import preserved_state
from camlab.progress import progress_bar

from .scenes import COLOUR_NAMES, LAB_CLASSES, normalise
from .vqa import ImageEncoder, VQAScenes, make_vqa_scenes

CAPTION_TEST_SEED = 3_000_017
POSITIONS: tuple[str, ...] = ("left", "right")
#: the caption vocabulary; ``<start>`` is fed at step 0, ``<end>`` closes every caption
WORDS: tuple[str, ...] = ("<pad>", "<start>", "<end>") + COLOUR_NAMES + LAB_CLASSES + POSITIONS
CAPTION_LENGTH = 3 * len(POSITIONS) + 1  # words per caption, <end> included
#: decoding steps whose word is an object's shape / colour, and which object (left = 0, right = 1) they name
SHAPE_STEPS = {1: 0, 4: 1}
COLOUR_STEPS = {0: 0, 3: 1}
_INDEX = {w: i for i, w in enumerate(WORDS)}
START, END = _INDEX["<start>"], _INDEX["<end>"]


# ----------------------------------------------------------------------------------------- data
@dataclass
class CaptionSet:
    """Scenes with their reference captions: ``tokens`` (N, CAPTION_LENGTH) word ids (<end> last); ``order`` (N, 2)
    the object index (into ``scenes.objects[i]``) named first (left) and second (right)."""

    scenes: VQAScenes
    captions: list[str]
    tokens: torch.Tensor
    order: torch.Tensor

    def __len__(self) -> int:
        return len(self.captions)

    def object_boxes(self, step: int) -> torch.Tensor:
        """(N, 4) boxes of the object the word at ``step`` is about (a step of SHAPE_STEPS or COLOUR_STEPS)."""
        which = {**SHAPE_STEPS, **COLOUR_STEPS}[step]
        return self.scenes.object_boxes[torch.arange(len(self)), self.order[:, which]]


def caption_scenes(scenes: VQAScenes) -> CaptionSet:
    """Reference captions of two-object scenes: objects left to right by box centre, colour shape position."""
    captions, order = [], []
    for objs in scenes.objects:
        if len(objs) != len(POSITIONS):
            raise ValueError(f"caption scenes hold exactly {len(POSITIONS)} objects, got {len(objs)}")
        ranked = sorted(range(len(objs)), key=lambda k: objs[k]["box"][0] + objs[k]["box"][2])
        captions.append(" ".join(f"{objs[k]['colour']} {objs[k]['class']} {pos}" for k, pos in zip(ranked, POSITIONS)))
        order.append(ranked)
    tokens = torch.tensor([[_INDEX[w] for w in c.split()] + [END] for c in captions], dtype=torch.long)
    return CaptionSet(scenes, captions, tokens.view(-1, CAPTION_LENGTH), torch.tensor(order, dtype=torch.long))


def make_caption_set(n: int, *, seed: int = 0) -> CaptionSet:
    """``n`` seeded two-object scenes with their captions."""
    return caption_scenes(make_vqa_scenes(n, seed=seed, min_objects=2, max_objects=2))


def caption_test_set(n: int = 500) -> CaptionSet:
    """The fixed seeded held-out scenes the captioner's accuracy and maps are measured on."""
    return make_caption_set(n, seed=CAPTION_TEST_SEED)


def words(tokens) -> str:
    """Word ids back to a phrase, stopping at <end>."""
    out = []
    for t in torch.as_tensor(tokens).tolist():
        if t == END:
            break
        out.append(WORDS[t])
    return " ".join(out)


# ---------------------------------------------------------------------------------------- model
class AttentionDecoder(nn.Module):
    """GRU decoder with soft attention over the encoder's map (one step per call of :meth:`step`)."""

    def __init__(self, channels: int = 64, embed: int = 16, hidden: int = 64, key: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(len(WORDS), embed)
        self.init = nn.Linear(channels, hidden)
        self.key = nn.Conv2d(channels + 2, key, 1)
        self.query = nn.Linear(hidden, key)
        self.gru = nn.GRUCell(embed + channels, hidden)
        self.out = nn.Linear(hidden + channels + 3, len(WORDS))

    def start(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial hidden state (from the mean feature) and the attention keys (features + x/y coordinates)."""
        n, _, h, w = features.shape
        ys = torch.linspace(-1, 1, h, device=features.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=features.device).view(1, 1, 1, w).expand(n, 1, h, w)
        keys = self.key(torch.cat([features, xs, ys], 1)).flatten(2)  # (N, K, hw)
        return torch.tanh(self.init(features.mean((2, 3)))), keys

    def step(self, features: torch.Tensor, keys: torch.Tensor, colours: torch.Tensor, hidden: torch.Tensor,
             previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One word: returns (logits (N, V), new hidden state, attention weights (N, h, w)). ``colours``: (N, 3, hw)
        mean input colour per position of the map."""
        scores = torch.einsum("nkp,nk->np", keys, self.query(hidden)) / keys.shape[1] ** 0.5
        alpha = torch.softmax(scores, 1)
        context = torch.einsum("ncp,np->nc", features.flatten(2), alpha)
        hidden = self.gru(torch.cat([self.embedding(previous), context], 1), hidden)
        logits = self.out(torch.cat([hidden, context, torch.einsum("ncp,np->nc", colours, alpha)], 1))
        return logits, hidden, alpha.view(features.shape[0], *features.shape[2:])


def _decode(model: nn.Module, images: torch.Tensor, features: torch.Tensor, steps: int,
            teacher: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, steps, V) and attention weights (N, steps, h, w): greedy decoding, or teacher forcing with the
    reference ``teacher`` tokens."""
    hidden, keys = model.decoder.start(features)
    colours = nn.functional.adaptive_avg_pool2d(images, features.shape[2:]).flatten(2)
    previous = torch.full((features.shape[0],), START, dtype=torch.long, device=features.device)
    out, attention = [], []
    for t in range(steps):
        logits, hidden, alpha = model.decoder.step(features, keys, colours, hidden, previous)
        out.append(logits)
        attention.append(alpha)
        previous = teacher[:, t] if teacher is not None else logits.argmax(1)
    return torch.stack(out, 1), torch.stack(attention, 1)


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"the captioner takes normalised images (N, 3, 64, 64), got {shape}; "
                         "use camlab.preprocess(images, model) or camlab.lab.normalise(images)")


class CaptionModel(nn.Module):
    """CNN encoder + attention GRU decoder. ``forward(images)`` -> (N, CAPTION_LENGTH, len(WORDS)) logits of greedy
    decoding; ``forward(images, tokens)`` teacher-forces the reference ``tokens`` (training)."""

    def __init__(self, width: int = 16, hidden: int = 64):
        super().__init__()
        self.encoder = ImageEncoder(width)
        self.decoder = AttentionDecoder(4 * width, hidden=hidden)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        _check_images(images)
        if tokens is not None and tuple(tokens.shape) != (images.shape[0], CAPTION_LENGTH):
            raise ValueError(f"reference tokens must be (N, {CAPTION_LENGTH}) = ({images.shape[0]}, {CAPTION_LENGTH}) "
                             f"word ids (CaptionSet.tokens), got shape {tuple(tokens.shape)}")
        return _decode(self, images, self.encoder(images), CAPTION_LENGTH, tokens)[0]

    def step(self, t: int) -> "CaptionStep":
        """A module ``images -> logits of word t`` (greedy decoding), sharing this model's parameters."""
        return CaptionStep(self, t)

    @torch.no_grad()
    def generate(self, images: torch.Tensor) -> list[str]:
        """Greedy captions of already-normalised images."""
        was = self.training
        self.eval()
        try:
            return [words(row) for row in self(images).argmax(2)]
        finally:
            self.train(was)


class CaptionStep(nn.Module):
    """:class:`CaptionModel` cut at decoding step ``t``: ``forward(images)`` -> (N, len(WORDS)) logits of word ``t``
    after greedy decoding of words 0..t-1 (the explainer contract). Submodules (``encoder.features``, ``decoder``)
    are the captioner's own; its ``camlab`` metadata is carried over with the vocabulary as labels."""

    def __init__(self, captioner: CaptionModel, t: int):
        super().__init__()
        if not 0 <= int(t) < CAPTION_LENGTH:
            raise ValueError(f"decoding step must be in 0..{CAPTION_LENGTH - 1}, got {t}")
        self.t = int(t)
        self.encoder = captioner.encoder
        self.decoder = captioner.decoder
        if hasattr(captioner, "camlab"):
            self.camlab = captioner.camlab
        self.train(captioner.training)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        return _decode(self, images, self.encoder(images), self.t + 1)[0][:, self.t]

    def extra_repr(self) -> str:
        return f"t={self.t}"


# ------------------------------------------------------------------------------------- training
def attention_targets(data: CaptionSet, size: tuple[int, int] = (16, 16)) -> torch.Tensor:
    """(N, CAPTION_LENGTH, h, w) 0/1: the map cells touched by the object each word is about (words 0-2: the left
    object, 3-5: the right one; ``<end>``: none)."""
    masks = nn.functional.adaptive_max_pool2d(data.scenes.object_masks.float(), size)  # (N, 3, h, w)
    about = data.order[:, [k for k in range(len(POSITIONS)) for _ in range(3)]]  # (N, 6) object per word
    targets = masks[torch.arange(len(data))[:, None], about]
    return torch.cat([targets, targets.new_zeros(len(data), 1, *size)], 1)


def caption_loss(logits: torch.Tensor, attention: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor,
                 attention_weight: float) -> torch.Tensor:
    r"""Cross-entropy of the words plus ``attention_weight`` times the attention's negative log mass on the object
    each word is about, :math:`-\log \sum_{ij \in \text{object}} \alpha_{t,ij}` (supervised attention, as in
    Liu et al., "Attention Correctness in Neural Image Captioning", AAAI 2017)."""
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())
    if attention_weight:
        has_object = targets.flatten(2).any(2)
        on_object = (attention * targets).flatten(2).sum(2)[has_object]
        loss = loss - attention_weight * torch.log(on_object + 1e-6).mean()
    return loss


def train_captioner(model: CaptionModel, *, seed: int = 0, epochs: int = 12, n_train: int = 4000,
                    lr: float = 3e-3, batch_size: int = 64, progress: bool = True,
                    encoder: nn.Module, attention_weight: float = 1.0) -> dict:
    """Seeded training with teacher forcing on ``n_train`` fixed scenes, on top of ``encoder``, a trained conv trunk
    that stays frozen (``lab_gap``'s ``features``, passed by :func:`camlab.lab.train.train_model`, as for ``lab_vqa``),
    with supervised attention (:func:`caption_loss`; without it the attention stays
    diffuse and colour words are at chance). Returns ``{"test_accuracy": word accuracy, "phrase_accuracy"}`` on
    :func:`caption_test_set`."""
    model.encoder.shape.load_state_dict(encoder.state_dict())
    model.encoder.shape.requires_grad_(False)
    data = make_caption_set(n_train, seed=seed * 1000 + 1)
    targets = attention_targets(data)
    x_all = normalise(data.scenes.images)
    model.encoder.shape.eval()
    with torch.no_grad():  # the frozen trunk's output never changes: compute it once
        shape_all = torch.cat([model.encoder.shape(x_all[i:i + 500]) for i in range(0, n_train, 500)])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = epochs * ((n_train + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.2)
    g = torch.Generator().manual_seed(seed)
    for _ in progress_bar(range(epochs), progress, desc="train lab_caption", unit="epoch"):
        model.train()
        model.encoder.shape.eval()  # keep the pretrained batch-norm statistics
        for idx in torch.randperm(n_train, generator=g).split(batch_size):
            features = model.encoder(x_all[idx], shape_all[idx])
            logits, attention = _decode(model, x_all[idx], features, CAPTION_LENGTH, data.tokens[idx])
            loss = caption_loss(logits, attention, data.tokens[idx], targets[idx], attention_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return caption_accuracy(model, caption_test_set())


@torch.no_grad()
def caption_accuracy(model: CaptionModel, data: CaptionSet, batch_size: int = 250) -> dict:
    """Word accuracy (greedy word t = reference word t, over all CAPTION_LENGTH steps) and phrase accuracy
    (the whole caption right)."""
    with preserved_state(model):
        model.eval()
        preds = torch.cat([model(normalise(data.scenes.images[i:i + batch_size])).argmax(2)
                           for i in range(0, len(data), batch_size)])
    right = preds == data.tokens
    return {"test_accuracy": float(right.float().mean()), "phrase_accuracy": float(right.all(1).float().mean())}

"""A toy visual question answering task on lab scenes, and a tiny VQA model to explain.

Scenes hold 2-3 objects of distinct shapes and distinct colours. Questions come from the scene metadata:

* ``"what colour is the square?"`` -> a colour name (about one object),
* ``"what shape is red?"`` -> a shape name (about one object),
* ``"is there a circle?"`` -> ``"yes"`` / ``"no"`` (about one object when the answer is yes).

The model: a CNN ``image_encoder`` (a frozen shape trunk from ``lab_gap`` plus a colour branch, merged into the
spatial map ``image_encoder.features``, 16x16 for 64x64 inputs), a
GRU ``question_encoder``, question-conditioned channel scaling and shift of the map (FiLM, ``film``), a
per-position 1x1-conv ``fusion`` that scores how well each position matches the question, softmax pooling of
the image map with those scores (one spatial attention map, no transformer), and an answer ``classifier``
over :data:`ANSWERS` reading the pooled features, the pooled mean colour, the question and the best score.

Explainers call ``model(x)`` with one image tensor, so :meth:`VQAModel.bind` fixes a question::

    bound = vqa.bind("what colour is the square?")     # shares vqa's parameters
    cam = camlab.GradCAM(bound, layer="image_encoder.features")
    heat = cam(x, target=None)                          # explains the predicted answer
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from camlab.hooks import preserved_state
from camlab.progress import progress_bar

from .architectures import conv_features
from .scenes import (COLOURS, COLOUR_NAMES, LAB_CLASSES, _background, _mask_boxes, _pick_distinct, _place,
                     _shape_masks, normalise)

VQA_TEST_SEED = 2_000_003

QUESTION_WORDS: tuple[str, ...] = ("what", "colour", "shape", "is", "the", "there", "a", "?")
VOCAB: tuple[str, ...] = ("<pad>",) + QUESTION_WORDS + LAB_CLASSES + COLOUR_NAMES
ANSWERS: tuple[str, ...] = COLOUR_NAMES + LAB_CLASSES + ("yes", "no")
MAX_QUESTION_LEN = 6
_WORD_INDEX = {w: i for i, w in enumerate(VOCAB)}
_ALIASES = {"color": "colour", "an": "a"}


# -------------------------------------------------------------------------------------- tokenizer
def tokenize(question: str) -> list[str]:
    """Lower-case words and "?" of a question (``"color"`` is accepted for ``"colour"``)."""
    words = re.findall(r"[a-z]+|\?", question.lower())
    return [_ALIASES.get(w, w) for w in words]


def encode_question(question: str) -> torch.Tensor:
    """Token ids (MAX_QUESTION_LEN,) long, right-padded with 0; ``ValueError`` on unknown words."""
    words = tokenize(question)
    if not words:
        raise ValueError("empty question")
    unknown = [w for w in words if w not in _WORD_INDEX]
    if unknown:
        raise ValueError(f"unknown word(s) {unknown} in {question!r}; the vocabulary is {' '.join(VOCAB[1:])}")
    if len(words) > MAX_QUESTION_LEN:
        raise ValueError(f"question too long ({len(words)} tokens > {MAX_QUESTION_LEN}): {question!r}")
    ids = [_WORD_INDEX[w] for w in words] + [0] * (MAX_QUESTION_LEN - len(words))
    return torch.tensor(ids, dtype=torch.long)


def encode_questions(questions: Sequence[str]) -> torch.Tensor:
    return torch.stack([encode_question(q) for q in questions]) if len(questions) else torch.zeros(0, MAX_QUESTION_LEN, dtype=torch.long)


# ----------------------------------------------------------------------------------------- scenes
@dataclass
class VQAScenes:
    """Images (N,3,H,W) in [0,1]; per image 2-3 objects of distinct shapes and colours.

    ``object_masks`` (N, 3, H, W) bool and ``object_boxes`` (N, 3, 4) xyxy (pixel edges, as in
    :mod:`camlab.lab.scenes`) are padded to 3 objects; ``counts`` (N,) says how many are real.
    """

    images: torch.Tensor
    objects: list[list[dict]]
    object_masks: torch.Tensor
    object_boxes: torch.Tensor
    counts: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])


def make_vqa_scenes(n: int, *, seed: int = 0, size: int = 64, min_objects: int = 2, max_objects: int = 3) -> VQAScenes:
    """Seeded VQA scenes: ``min_objects``..``max_objects`` objects, all shapes and all colours distinct."""
    if not 1 <= min_objects <= max_objects <= 3:
        raise ValueError("need 1 <= min_objects <= max_objects <= 3")
    g = torch.Generator().manual_seed(int(seed))
    scale = size / 64.0
    images = _background(n, size, g)
    counts = torch.randint(min_objects, max_objects + 1, (n,), generator=g)
    shapes = _pick_distinct(n, 3, len(LAB_CLASSES), g)
    colours = _pick_distinct(n, 3, len(COLOURS), g)
    palette = torch.tensor(list(COLOURS.values()))
    jitter = 0.06 * (torch.rand(n, 3, 3, generator=g) - 0.5)
    masks, taken = [], []
    for k in range(3):
        r = scale * (7.0 + 4.0 * torch.rand(n, generator=g))
        cx, cy = _place(n, r, taken, size, g, None, gap=3.0)
        taken.append(torch.stack([cx, cy, r], 1))
        m = _shape_masks(shapes[:, k], cx, cy, r, size) & (counts > k).view(n, 1, 1)
        colour = (palette[colours[:, k]] + jitter[:, k]).clamp(0, 1)
        images = torch.where(m.unsqueeze(1), colour.view(n, 3, 1, 1), images)
        masks.append(m)
    object_masks = torch.stack(masks, 1)
    boxes = torch.stack([_mask_boxes(m) for m in masks], 1)
    s_l, c_l, b_l, k_l = shapes.tolist(), colours.tolist(), boxes.tolist(), counts.tolist()
    objects = [
        [{"class": LAB_CLASSES[s_l[i][k]], "colour": COLOUR_NAMES[c_l[i][k]], "box": tuple(b_l[i][k])}
         for k in range(k_l[i])]
        for i in range(n)
    ]
    return VQAScenes(images.clamp_(0, 1).contiguous(), objects, object_masks, boxes, counts)


@dataclass
class VQASet:
    """Scenes with one question each: ``answers`` (N,) index into :data:`ANSWERS`; ``about`` (N,) the index of
    the object the question is about (-1 for "is there a X?" answered "no")."""

    scenes: VQAScenes
    questions: list[str]
    tokens: torch.Tensor
    answers: torch.Tensor
    about: torch.Tensor
    kinds: list[str]  # "colour" | "shape" | "exists"

    def __len__(self) -> int:
        return len(self.questions)


def ask(scenes: VQAScenes, *, seed: int = 0, kinds: Sequence[str] = ("colour", "shape", "exists")) -> VQASet:
    """One seeded random question per scene, of a kind drawn uniformly from ``kinds``."""
    rng = np.random.default_rng(seed)
    questions, answers, about, kind_l = [], [], [], []
    for objs in scenes.objects:
        kind = kinds[rng.integers(len(kinds))]
        j = int(rng.integers(len(objs)))
        o = objs[j]
        if kind == "colour":
            q, a = f"what colour is the {o['class']}?", o["colour"]
        elif kind == "shape":
            q, a = f"what shape is {o['colour']}?", o["class"]
        elif kind == "exists":
            present = {p["class"] for p in objs}
            absent = [c for c in LAB_CLASSES if c not in present]
            if rng.random() < 0.5 or not absent:
                q, a = f"is there a {o['class']}?", "yes"
            else:
                q, a, j = f"is there a {absent[int(rng.integers(len(absent)))]}?", "no", -1
        else:
            raise ValueError(f"unknown question kind {kind!r}")
        questions.append(q)
        answers.append(ANSWERS.index(a))
        about.append(j)
        kind_l.append(kind)
    return VQASet(scenes, questions, encode_questions(questions), torch.tensor(answers), torch.tensor(about), kind_l)


def vqa_test_set(n: int = 1000) -> VQASet:
    """The fixed seeded VQA test set the zoo's VQA accuracy is measured on."""
    return ask(make_vqa_scenes(n, seed=VQA_TEST_SEED), seed=VQA_TEST_SEED)


# ------------------------------------------------------------------------------------------ model
class ImageEncoder(nn.Module):
    """``shape``: the lab's conv trunk (initialised from ``lab_gap`` and frozen in training: it knows shapes but
    has learned to ignore colour); ``colour``: mean colour per 4x4 cell through a 1x1 conv; ``features``: a 1x1
    conv + ReLU over both, the (N, 4*width, 16, 16) spatial map to explain."""

    def __init__(self, width: int = 16, colour_channels: int = 16):
        super().__init__()
        c = 4 * width
        self.shape = conv_features(width, pools=2)
        self.colour = nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(3, colour_channels, 1), nn.ReLU())
        self.features = nn.Sequential(nn.Conv2d(c + colour_channels, c, 1), nn.ReLU())

    def forward(self, x: torch.Tensor, shape_features: torch.Tensor | None = None) -> torch.Tensor:
        s = self.shape(x) if shape_features is None else shape_features  # precomputed while training
        return self.features(torch.cat([s, self.colour(x)], 1))


class QuestionEncoder(nn.Module):
    def __init__(self, vocab_size: int = len(VOCAB), embed: int = 32, hidden: int = 64):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.bow = nn.Linear(embed, hidden)  # bag-of-words skip: the GRU alone learns far more slowly

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(tokens)
        lengths = (tokens != 0).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)
        return h[-1] + self.bow(emb.sum(1))


def _vqa_forward(m: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
                 shape_features: torch.Tensor | None = None) -> torch.Tensor:
    a = m.image_encoder(images, shape_features)  # (N, C, h, w)
    q = m.question_encoder(tokens)  # (N, D)
    gamma, beta = m.film(q).chunk(2, dim=1)
    where = m.fusion(a * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])  # (N, 1, h, w) relevance
    weights = torch.softmax(where.flatten(1), 1).view_as(where)
    pooled = (a * weights).sum((2, 3))  # (N, C): the image features where the question points
    peak = where.flatten(1).max(1).values[:, None]  # how well the best position matches ("is there ...?")
    rgb = (nn.functional.avg_pool2d(images, 4) * weights).sum((2, 3))  # mean colour where it points
    return m.classifier(torch.cat([pooled, q, peak, rgb], 1))


class VQAModel(nn.Module):
    """Image encoder + GRU question encoder, FiLM fusion to a relevance map, question-guided pooling, classifier.

    ``forward(images, questions)``: ``questions`` is one string (asked of every image), a list of N strings,
    or a (N, L) long tensor of token ids from :func:`encode_questions`. Returns (N, len(ANSWERS)) logits.
    """

    def __init__(self, width: int = 16, q_hidden: int = 64):
        super().__init__()
        c = 4 * width
        self.image_encoder = ImageEncoder(width)
        self.question_encoder = QuestionEncoder(hidden=q_hidden)
        self.film = nn.Linear(q_hidden, 2 * c)
        self.fusion = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, 1, 1))
        self.classifier = nn.Sequential(nn.Linear(c + q_hidden + 1 + 3, 64), nn.ReLU(), nn.Linear(64, len(ANSWERS)))

    def forward(self, images: torch.Tensor, questions=None) -> torch.Tensor:
        if questions is None:
            raise TypeError("the VQA model needs a question: model(x, 'what colour is the square?'), or explain "
                            "model.bind('what colour is the square?'), which takes images only")
        if isinstance(questions, str):
            tokens = encode_question(questions).to(images.device).expand(images.shape[0], -1)
        elif isinstance(questions, torch.Tensor):
            tokens = questions.to(images.device)
        else:
            tokens = encode_questions(list(questions)).to(images.device)
        if tokens.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {tokens.shape[0]} questions")
        return _vqa_forward(self, images, tokens)

    def bind(self, question: str) -> "BoundVQA":
        """A module ``images -> answer logits`` with ``question`` fixed, sharing this model's parameters."""
        return BoundVQA(self, question)

    def answer(self, images: torch.Tensor, question: str) -> list[str]:
        """Predicted answer words for already-normalised images."""
        with torch.no_grad():
            return [ANSWERS[i] for i in self(images, question).argmax(1).tolist()]


class BoundVQA(nn.Module):
    """``VQAModel`` with a fixed question: ``forward(images)`` only, the explainer contract.

    Its submodules are the VQA model's own (same names: ``image_encoder.features``, ``fusion``, ...), so
    parameters are shared and layers are found by the same dotted names; ``camlab`` metadata is carried over.
    """

    def __init__(self, vqa: VQAModel, question: str):
        super().__init__()
        self.question = question
        self.image_encoder = vqa.image_encoder
        self.question_encoder = vqa.question_encoder
        self.film = vqa.film
        self.fusion = vqa.fusion
        self.classifier = vqa.classifier
        self.register_buffer("tokens", encode_question(question), persistent=False)
        if hasattr(vqa, "camlab"):
            self.camlab = vqa.camlab
        self.train(vqa.training)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _vqa_forward(self, images, self.tokens.to(images.device).expand(images.shape[0], -1))

    def extra_repr(self) -> str:
        return f"question={self.question!r}"


# --------------------------------------------------------------------------------------- training
def train_vqa(model: VQAModel, *, seed: int = 0, epochs: int = 10, n_train: int = 5000, lr: float = 3e-3,
              batch_size: int = 64, progress: bool = True, encoder: nn.Module | None = None,
              log=None) -> None:
    """Seeded training: ``n_train`` fixed scenes, fresh random questions about them each epoch.

    ``encoder``: a trained conv trunk of the same architecture (a lab classifier's ``features``) that becomes the
    image encoder's frozen ``shape`` trunk, so that shapes are recognised from the start (the committed ``lab_vqa``
    uses ``lab_gap``'s, passed by :func:`camlab.lab.train.train_model`); ``None`` trains everything from scratch (much
    slower to learn).
    """
    frozen = encoder is not None
    if frozen:
        model.image_encoder.shape.load_state_dict(encoder.state_dict())
        model.image_encoder.shape.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = epochs * ((n_train + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    scenes = make_vqa_scenes(n_train, seed=seed * 1000)
    x_all = normalise(scenes.images)
    shape_all = None
    if frozen:  # the frozen trunk's output never changes: compute it once
        model.image_encoder.shape.eval()
        with torch.no_grad():
            shape_all = torch.cat([model.image_encoder.shape(x_all[i:i + 500]) for i in range(0, n_train, 500)])
    it = progress_bar(range(epochs), progress, desc="train lab_vqa", unit="epoch")
    for epoch in it:
        data = ask(scenes, seed=seed * 1000 + epoch)  # fresh questions about the same scenes
        order = torch.randperm(n_train, generator=g)
        model.train()
        if frozen:
            model.image_encoder.shape.eval()  # keep the pretrained batch-norm statistics
        total = 0.0
        for i in range(0, n_train, batch_size):
            idx = order[i:i + batch_size]
            s = None if shape_all is None else shape_all[idx]
            loss = loss_fn(_vqa_forward(model, x_all[idx], data.tokens[idx], s), data.answers[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix(loss=f"{total / n_train:.3f}")
        if log is not None:
            log(epoch, total / n_train)
    model.eval()


@torch.no_grad()
def vqa_predict(model: VQAModel, data: VQASet, batch_size: int = 250) -> torch.Tensor:
    preds = []
    with preserved_state(model):
        for i in range(0, len(data), batch_size):
            x = normalise(data.scenes.images[i:i + batch_size])
            preds.append(model(x, data.tokens[i:i + batch_size]).argmax(1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def vqa_accuracy(model: VQAModel, data: VQASet) -> float:
    return float((vqa_predict(model, data) == data.answers).float().mean())

"""Any model output: a callable target receives the output exactly as the model returned it (tensor, tuple, dict,
dataclass, Hugging-Face-style ``ModelOutput``, list of dicts); class-index targets find the logits in a tuple's first
item or a ``logits`` field; every method gives the same map as on the plain logits model; an output without logits
gets an error that points to callable targets; Eigen-CAM never reads the output. (On main e3ff581 every one of these
outputs failed with ``AttributeError: ... has no attribute 'ndim'``.)"""
from __future__ import annotations

import warnings
from collections import OrderedDict, namedtuple
from dataclasses import dataclass, fields

import pytest
import torch
from torch import nn

import camlab
from camlab import targets
from camlab.methods import METHODS
from camlab.methods.registry import takes_layer
from tests.test_methods_state import FAST, tiny_net

NAMES = sorted(METHODS)


@dataclass
class ClassifierOutput:
    """A plain dataclass output."""

    logits: torch.Tensor
    features: torch.Tensor


@dataclass
class HFLikeOutput(OrderedDict):
    """Like transformers' ``ModelOutput``: a dataclass that is also an ordered dict of its non-None fields."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple | None = None

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                self[field.name] = value


Pair = namedtuple("Pair", ["logits", "pooled"])

WRAPS = {
    "tensor": lambda logits, features: logits,
    "tuple": lambda logits, features: (logits, features),
    "list": lambda logits, features: [logits, features],
    "namedtuple": lambda logits, features: Pair(logits, features.mean((2, 3))),
    "dict": lambda logits, features: {"logits": logits, "features": features},
    "dataclass": lambda logits, features: ClassifierOutput(logits, features),
    "hf_like": lambda logits, features: HFLikeOutput(logits=logits, hidden_states=(features,)),
}


class Wrapped(nn.Module):
    """The test net with its output wrapped in another structure; same modules, same dotted names."""

    def __init__(self, kind: str):
        super().__init__()
        net = tiny_net().eval()
        self.features, self.pool, self.dropout, self.fc = net.features, net.pool, net.dropout, net.fc
        self.kind = kind

    def forward(self, x):
        features = self.features(x)
        logits = self.fc(self.dropout(torch.flatten(self.pool(features), 1)))
        return WRAPS[self.kind](logits, features)


def x_batch() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def maps(name: str, model: nn.Module, target) -> torch.Tensor:
    layer = "features.4" if takes_layer(METHODS[name]) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return camlab.build(name, model, layer=layer, batch_size=16, **FAST)(x_batch(), target=target)


@pytest.mark.parametrize("name", NAMES)
def test_every_method_gives_the_plain_models_map_on_a_wrapped_output(name):
    """Class indices (one for all, one per image) read the logits inside a tuple, a dict, a dataclass and a
    Hugging-Face-style output: the same maps as on the plain logits."""
    for target in (1, [0, 2]):
        expected = maps(name, Wrapped("tensor"), target)
        for kind in ("tuple", "dict", "dataclass", "hf_like"):
            torch.testing.assert_close(maps(name, Wrapped(kind), target), expected, rtol=1e-5, atol=1e-6,
                                       msg=lambda text, kind=kind: f"{kind}: {text}")


@pytest.mark.parametrize("kind", list(WRAPS))
def test_a_callable_target_receives_the_output_exactly_as_returned(kind):
    model = Wrapped(kind)
    expected_type = type(model(x_batch()))
    seen = []

    def target(output):
        seen.append(type(output))
        return targets.logits_of(output)[:, 2]

    result = camlab.GradCAM(model, layer="features.4")(x_batch(), target=target)
    assert seen == [expected_type]
    torch.testing.assert_close(result, camlab.GradCAM(Wrapped("tensor"), layer="features.4")(x_batch(), target=2))


class Detector(nn.Module):
    """A toy detector: conv features, then one dict per image with a box, a label and a differentiable score."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        pooled = self.features(x).mean((2, 3))
        score = self.head(pooled)[:, 0].sigmoid()
        return [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([1]), "scores": s[None]}
                for s in score]


def test_class_index_targets_on_an_output_without_logits_point_to_callable_targets():
    with pytest.raises(TypeError, match=r"the model returned a list of 2 items \(dict\).*callable target.*"
                                        r"DetectionTarget"):
        camlab.GradCAM(Detector(), layer="features")(x_batch(), target=1)
    with pytest.raises(TypeError, match=r"returned a dict with keys \['out'\].*'logits' field"):
        camlab.GradCAM(nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), _Dict()), layer="1")(x_batch())


class _Dict(nn.Module):
    def forward(self, x):
        return {"out": x}


@pytest.mark.parametrize("name", ["eigencam", "random"])
def test_methods_that_ignore_the_target_never_read_the_output(name):
    """Eigen-CAM and RandomCAM run on a detector's list of dicts, and a target is never called."""
    def never(output):
        raise AssertionError("the target was called")

    result = camlab.build(name, Detector(), layer="features")(x_batch(), target=never)
    plain = nn.Sequential(*Detector().features)
    torch.testing.assert_close(result, camlab.build(name, plain, layer="1")(x_batch()))


def test_a_callable_target_on_a_list_of_dicts_explains_each_images_detection():
    """Grad-CAM through a list-of-dicts output equals Grad-CAM of the same score computed as a tensor."""
    detector = Detector()

    def detection_score(output):
        return torch.stack([image["scores"][0] for image in output])

    class Scores(nn.Module):
        def __init__(self):
            super().__init__()
            self.features, self.head = detector.features, detector.head

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3))).sigmoid()

    expected = camlab.GradCAM(Scores(), layer="features")(x_batch(), target=0)
    torch.testing.assert_close(camlab.GradCAM(detector, layer="features")(x_batch(), target=detection_score), expected)


@pytest.mark.parametrize("returned, message", [
    (lambda output: targets.logits_of(output), r"shape \(2,\) \(one score per image\), got shape \(2, 3\)"),
    (lambda output: 1.0, r"got float"),
    (lambda output: targets.logits_of(output)[0, :2].sum(), r"got shape \(\)"),
])
def test_a_callable_returning_anything_but_one_score_per_image_is_refused(returned, message):
    with pytest.raises(ValueError, match=message):
        camlab.GradCAM(Wrapped("dict"), layer="features.4")(x_batch(), target=returned)


def test_outputs_helpers_keep_the_structure():
    logits, features = torch.randn(2, 3, requires_grad=True), torch.randn(2, 4, 2, 2)
    output = HFLikeOutput(logits=logits * 2, hidden_states=(features,))
    detached = targets.detach(output)
    assert type(detached) is HFLikeOutput and not detached.logits.requires_grad and detached["logits"] is not None
    one = targets.split(output, 1)
    torch.testing.assert_close(one.logits, (logits * 2)[1:2])
    torch.testing.assert_close(one.hidden_states[0], features[1:2])
    detections = [{"boxes": torch.zeros(3, 4)}, {"boxes": torch.ones(1, 4)}]
    assert targets.batch_size(detections) == 2
    assert targets.split(detections, 1) == [detections[1]]
    pair = targets.split(Pair(logits, features), 0)
    assert isinstance(pair, Pair) and pair.pooled.shape == (1, 4, 2, 2)


def test_predict_and_the_metrics_read_the_logits_of_a_wrapped_output():
    """``camlab.predict`` and the faithfulness metrics (through their model probabilities) give the same numbers on a
    Hugging-Face-style output as on the plain logits."""
    plain, wrapped = Wrapped("tensor"), Wrapped("hf_like")
    for model in (plain, wrapped):
        model.camlab = camlab.ModelInfo("tiny", ["a", "b", "c"], (8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert camlab.predict(wrapped, x_batch(), k=2) == camlab.predict(plain, x_batch(), k=2)
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2))
    for metric in (camlab.metrics.average_drop, camlab.metrics.deletion_auc):
        assert metric(wrapped, x_batch(), maps, target=[0, 2]) == metric(plain, x_batch(), maps, target=[0, 2])


def test_tensors_finds_every_tensor_in_a_nested_output_in_order():
    """The one walker of output structures (the layer-path check reads its float tensors): dataclass fields, dict
    values, tuple and list items, nested."""
    @dataclass
    class Out:
        logits: torch.Tensor
        extra: dict

    a, b, c, d = (torch.full((1,), float(i)) for i in range(4))
    found = targets.tensors((Out(a, {"x": [b, "label"], "y": c}), d, None))
    assert [float(t) for t in found] == [0.0, 1.0, 2.0, 3.0]

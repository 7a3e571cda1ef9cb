"""Deep Feature Factorization's figure and its call's side effects."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import torch
from torch import nn

import camlab
from camlab.concept_figure import concept_labels, concept_overlay, show_concepts

matplotlib.use("Agg")


def test_concept_labels_name_the_top_classes_with_ties_by_index():
    """Scores (0, ln 3, 0): softmax (1/5, 3/5, 1/5); the top two are class 1 (60%) and, of the tied 0 and 2, class 0."""
    scores = torch.tensor([[0.0, math.log(3), 0.0]])
    assert concept_labels(scores, ["a", "b", "c"], top_k=2) == ["b 60%, a 20%"]


def test_concept_overlay_paints_each_pixel_with_its_strongest_concept():
    """Two concepts on a 1x2 black image, image_weight 0: pixel 0 belongs to concept 0 at strength 1 (its colour),
    pixel 1 to concept 1 at strength 0.5 (half its colour)."""
    maps = torch.tensor([[[1.0, 0.2]], [[0.0, 0.5]]])
    blended, colours = concept_overlay(np.zeros((1, 2, 3)), maps, image_weight=0.0)
    assert np.allclose(blended[0, 0], colours[0])
    assert np.allclose(blended[0, 1], 0.5 * colours[1])


def test_show_concepts_draws_image_overlay_and_legend():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    result = camlab.DeepFeatureFactorization(model, "1", n_components=2, head=model[4])(x)
    figure = show_concepts(x[0], result, labels=["cat", "dog", "fox"])
    texts = [text.get_text() for text in figure.legends[0].get_texts()]
    assert len(figure.axes) == 2 and len(texts) == 2 and all(t.startswith(("0: ", "1: ")) for t in texts)
    matplotlib.pyplot.close(figure)


def test_dff_restores_the_model_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3)).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = camlab.DeepFeatureFactorization(model, "2", n_components=2)(torch.rand(2, 3, 6, 6))
    assert model.training and all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert result.maps.shape == (2, 2, 6, 6) and result.scores is None

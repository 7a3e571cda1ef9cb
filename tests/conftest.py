"""Shared fixtures: the offline ImageNet model (loaded once), tiny nets, and a snapshot of a model's state."""
from __future__ import annotations

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# Exercise checks raise on failure (so the committed solutions are checked), and nothing may use the network:
# both settings reach the notebook kernels that nbval starts, which inherit this environment.
os.environ.setdefault("CAMLAB_STRICT_CHECKS", "1")
os.environ.setdefault("CAMLAB_OFFLINE", "1")

import camlab  # noqa: E402
from tests.snapshots import ModelSnapshot  # noqa: E402,F401


@pytest.fixture(scope="session")
def lite0():
    return camlab.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def cat_input(lite0):
    return camlab.preprocess(camlab.load_image("cat"), lite0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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

#: The arithmetic the notebooks are checked under differs from the one that stored their outputs (`camlab course
#: execute`: every core, the CPU's widest instructions): one thread, so sums run in another order, and oneDNN / MKL
#: held to AVX2, as on another CPU. A stored output that depends on the last bits of a float fails here, not on a
#: student's machine (tests/test_reproducible_outputs.py shows that these settings do change raw floats).
PERTURBED_ARITHMETIC = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2",
                        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Notebook kernels (started by nbval in the first cell's setup) inherit the perturbed arithmetic."""
    if type(item).__name__ == "NbCellItem":
        for name, value in PERTURBED_ARITHMETIC.items():
            os.environ.setdefault(name, value)

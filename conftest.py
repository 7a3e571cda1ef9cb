"""Settings for everything pytest runs from this checkout, the notebooks under nbval included (tests/conftest.py
holds the unit tests' fixtures)."""
from __future__ import annotations

import os

import pytest

# Exercise checks raise on failure (so the committed solutions are checked), and nothing may use the network:
# both settings reach the notebook kernels that nbval starts, which inherit this environment.
os.environ.setdefault("CAMLAB_STRICT_CHECKS", "1")
os.environ.setdefault("CAMLAB_OFFLINE", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """nbval starts a notebook's kernel in its first cell's setup: the kernel inherits the perturbed arithmetic
    (camlab.course.PERTURBED_ARITHMETIC), so a stored output that depends on the last bits of a float fails."""
    if type(item).__name__ == "IPyNbCell":
        from camlab.course import PERTURBED_ARITHMETIC

        for name, value in PERTURBED_ARITHMETIC.items():
            os.environ.setdefault(name, value)

"""The notebooks' printed outputs do not depend on the last bits of a float: the suite checks every notebook under
an arithmetic other than the one that stored its outputs (the root conftest.py, PERTURBED_ARITHMETIC). Here: that
perturbation really changes raw floats, so the nbval run that passes under it proves something."""
from __future__ import annotations

import os
import subprocess
import sys

from camlab.course import PERTURBED_ARITHMETIC

_PROBE = """
import torch, camlab
model = camlab.load_model("efficientnet_lite0")
x = camlab.preprocess(camlab.load_image("two_cats"), model)
with torch.no_grad():
    p = model(x).softmax(dim=1)[0, 285].item()
heat = camlab.GradCAM(model, layer="blocks.5")(x, target=285, raw=True)
print(repr(p), repr(heat.double().sum().item()))
print(f"{p:.4f}")
"""


def _run(env_changes: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in PERTURBED_ARITHMETIC}
    env.update(env_changes)
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_perturbed_arithmetic_changes_raw_floats_but_not_what_the_notebooks_print():
    native = _run({})
    perturbed = _run(PERTURBED_ARITHMETIC)
    assert native[0] != perturbed[0], f"the perturbation changed no float ({native[0]}): it would prove nothing"
    assert native[1] == perturbed[1], "a probability printed at 4 decimals should not change"


def test_notebook_kernels_get_the_perturbed_arithmetic(monkeypatch):
    """The root conftest.py recognises nbval's cell items by their class name: if nbval renamed it, notebooks
    would silently run under the native arithmetic again."""
    import nbval.plugin

    import importlib.util
    from pathlib import Path

    # the repository's root conftest.py by its path: `import conftest` finds tests/conftest.py first when pytest
    # puts tests/ on sys.path (a fresh clone in CI)
    root_conftest = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("root_conftest", root_conftest)
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    assert hasattr(nbval.plugin, "IPyNbCell")
    environment = {}
    monkeypatch.setattr(os, "environ", environment)
    conftest.pytest_runtest_setup(type("IPyNbCell", (), {})())
    assert environment == PERTURBED_ARITHMETIC

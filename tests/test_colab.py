"""Colab, simulated: a notebook's setup cell pip-installs camlab into a Python environment that does not have it.

How the environment is made, and why. Colab is a Python with torch, numpy, matplotlib, ipywidgets, ipykernel ...
but without camlab, and ``google.colab`` imported. Creating a fresh virtual environment with all of those would
download and install gigabytes for minutes, so the test builds the stand-in from this test environment instead:

- ``python -m venv --without-pip`` makes a new, empty environment (its own ``site-packages``, its own prefix);
- a ``.pth`` file there exposes a folder of symbolic links to every entry of this environment's site-packages
  *except camlab's* (its editable-install finder and ``.pth``, its dist-info): torch, pip, ipykernel, ... are
  importable, camlab is not, and no installed camlab distribution is visible to pip or ``importlib.metadata``
  (a folder named in a ``.pth`` file has its own ``.pth`` files ignored, so no editable install leaks in either);
- a stand-in ``google.colab`` package (``output.enable_custom_widget_manager`` records its calls) is imported when
  the kernel starts, as in Colab; ``PYTHONPATH`` holds only that package, so the checkout is not importable;
- ``CAMLAB_INSTALL_SOURCE`` points at a wheel built from this checkout; ``PIP_NO_INDEX=1`` keeps pip offline, and
  so unable to replace (through the links) a package of this environment.

camlab itself is then really pip-installed by the notebook's setup cell into the new environment, with its
dependencies resolved against the exposed packages; the test reads the new distribution's ``direct_url.json``.
"""
from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from camlab.course import DISTRIBUTION, notebooks_dir, setup_cell

ROOT = notebooks_dir().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

STAND_IN = '''"""Stand-in for Colab's google.colab.output (tests only): records calls."""
calls = []


def enable_custom_widget_manager():
    calls.append("enable_custom_widget_manager")
'''

# printed by a cell appended to the notebook: where camlab came from, and what the setup cell did
PROBE = f'''
import importlib.metadata, json, sys
import camlab, torch
distribution = importlib.metadata.distribution("{DISTRIBUTION}")
print(json.dumps({{
    "direct_url": json.loads(distribution.read_text("direct_url.json")),
    "camlab_file": camlab.__file__,
    "prefix": sys.prefix,
    "widget_manager": sys.modules["google.colab.output"].calls,
    "models": sorted(name for name, value in globals().items() if isinstance(value, torch.nn.Module)),
}}))
'''


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, cwd=dist)
    (built,) = dist.glob(f"{DISTRIBUTION.replace('-', '_')}-*.whl")
    return built


def make_colab(root: Path, wheel: Path) -> str:
    """An environment without camlab, a kernel for it that imports ``google.colab`` first; returns its name."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    new_site = Path(subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    exposed = root / "exposed"
    exposed.mkdir()
    for folder in map(Path, site.getsitepackages()):
        for entry in folder.iterdir():
            if "camlab" not in entry.name.lower() and not (exposed / entry.name).exists():
                (exposed / entry.name).symlink_to(entry)
    (new_site / "test-environment.pth").write_text(f"{exposed}\n")
    (root / "stand-in" / "google" / "colab").mkdir(parents=True)
    (root / "stand-in" / "google" / "colab" / "__init__.py").write_text("from . import output\n")
    (root / "stand-in" / "google" / "colab" / "output.py").write_text(STAND_IN)
    kernel = root / "jupyter" / "kernels" / "colab-simulated"
    kernel.mkdir(parents=True)
    launch = "import google.colab; from ipykernel import kernelapp; kernelapp.launch_new_instance()"
    env = {"PYTHONPATH": str(root / "stand-in"), "CAMLAB_INSTALL_SOURCE": str(wheel), "PIP_NO_INDEX": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    spec = {"argv": [str(python), "-c", launch, "-f", "{connection_file}"], "display_name": "Colab (simulated)",
            "language": "python", "env": env}
    (kernel / "kernel.json").write_text(json.dumps(spec))
    return "colab-simulated"


def run_first_cells(stem: str, last: str, root: Path, kernel: str):
    """Run ``stem``'s cells up to the first code cell containing ``last``, then the probe; return the cells run
    and the probe's report."""
    notebook = nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)
    end = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and last in cell.source)
    notebook.cells = notebook.cells[:end + 1] + [nbformat.v4.new_code_cell(PROBE)]
    (root / "work").mkdir()
    NotebookClient(notebook, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(root / "work")}}
                   ).execute()
    report = json.loads("".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream"))
    return notebook.cells, report


#: chapters whose widgets must display in Colab: (stem, the first code cell that displays one)
WIDGET_CHAPTERS = [("04_evaluation", "quiz = ClassQuiz(")]


@pytest.mark.parametrize("stem, widget_cell", WIDGET_CHAPTERS)
def test_in_colab_the_setup_cell_installs_camlab_from_the_source_and_the_chapter_runs_to_its_widget(
        stem, widget_cell, tmp_path, wheel, monkeypatch):
    """One run covers the whole path: setup cell (install, widget manager), imports, the offline ImageNet model and
    a lab model load (04 loads both before its quiz), and the quiz widget displays (04 runs up to it: ~20 s on a quiet
    machine; the cells before it compute what the quiz shows)."""
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    cells, report = run_first_cells(stem, widget_cell, tmp_path, make_colab(tmp_path, wheel))
    assert report["direct_url"]["url"] == wheel.resolve().as_uri(), report["direct_url"]
    assert Path(report["prefix"]) == tmp_path / "venv"
    assert Path(report["camlab_file"]).is_relative_to(tmp_path / "venv"), report["camlab_file"]
    assert report["widget_manager"] == ["enable_custom_widget_manager"]
    assert {"model", "lab"} <= set(report["models"]), report["models"]
    assert any(WIDGET_VIEW in output.get("data", {}) for output in cells[-2].outputs), cells[-2].outputs


def test_setup_cell_installs_the_override_or_the_setting_and_enables_widgets_only_in_colab(monkeypatch):
    """The setup cell's text, run with ``subprocess.run`` recorded: outside Colab it runs nothing; in Colab it runs
    ``pip install -q SOURCE`` (``CAMLAB_INSTALL_SOURCE`` if set, else ``INSTALL_SOURCE``) and enables widgets."""
    from camlab.course import INSTALL_SOURCE

    commands, enabled = [], []
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append((command, check)))
    exec(setup_cell(), {})
    assert commands == [] and enabled == []

    output = type(sys)("google.colab.output")
    output.enable_custom_widget_manager = lambda: enabled.append(True)
    colab = type(sys)("google.colab")
    colab.output = output
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    monkeypatch.delenv("CAMLAB_INSTALL_SOURCE", raising=False)
    exec(setup_cell(), {})
    monkeypatch.setenv("CAMLAB_INSTALL_SOURCE", "/tmp/torch_camlab-0.1.0-py3-none-any.whl")
    exec(setup_cell(), {})
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    assert commands == [(pip + [INSTALL_SOURCE], True), (pip + ["/tmp/torch_camlab-0.1.0-py3-none-any.whl"], True)]
    assert enabled == [True, True]

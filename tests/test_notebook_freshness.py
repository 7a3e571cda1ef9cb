"""Stored notebook outputs are the outputs of the current code: the suite compares them with a fresh run.

The project's pytest options run nbval in its strict mode (every text output compared, with sanitizers only for
timings, progress and memory addresses). These tests pin that configuration and show that it catches a stale output.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SANITIZER = ROOT / "tests" / "nbval_sanitize.cfg"


def addopts() -> list[str]:
    line = re.search(r'^addopts\s*=\s*"([^"]*)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return line.group(1).split()


def test_the_suite_compares_stored_outputs_strictly():
    options = addopts()
    assert "--nbval" in options and "--nbval-lax" not in options
    assert options[options.index("--nbval-sanitize-with") + 1] == "tests/nbval_sanitize.cfg"


def executed_notebook(folder: Path, source: str) -> Path:
    """A one-cell notebook run for real, so its stored output is genuine."""
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    NotebookClient(notebook, kernel_name="python3").execute()
    path = folder / "tiny.ipynb"
    nbformat.write(notebook, path)
    return path


def nbval(path: Path) -> subprocess.CompletedProcess:
    """Run pytest on one notebook with the project's own nbval options (from pyproject.toml)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c",
         str(ROOT / "pyproject.toml"), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_fresh_output_passes_and_an_edited_one_fails(tmp_path):
    path = executed_notebook(tmp_path, "print('pointing game', 17 / 20)\nprint('took 12.5 ms')")
    fresh = nbval(path)
    assert fresh.returncode == 0, fresh.stdout[-2000:]

    notebook = nbformat.read(path, as_version=4)
    notebook.cells[0].outputs[0].text = notebook.cells[0].outputs[0].text.replace("0.85", "0.9")
    nbformat.write(notebook, path)
    stale = nbval(path)
    assert stale.returncode != 0 and "Cell outputs differ" in stale.stdout, stale.stdout[-2000:]


def test_timings_are_masked_but_nothing_else(tmp_path):
    path = executed_notebook(tmp_path, "print('took 12.5 ms')")
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[0].outputs[0].text = "took 99.0 ms\n"
    nbformat.write(notebook, path)
    assert nbval(path).returncode == 0

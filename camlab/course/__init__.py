"""The course's shared settings and tools: the Colab setup cell, the chapter list, notebook execution.

Sub-modules: ``colab`` (the install source and what is derived from it: setup cell, badges; no torch),
``badges`` (writes those into the notebooks and the README, and the students' versions), ``student`` (the students'
notebooks), ``seeds`` (per-student seeds), ``submissions``, ``sandbox``, ``worker``, ``remote`` and ``grading``
(grading them), ``gradebook`` (what grading writes), ``cli`` (``camlab course ...``)."""
from __future__ import annotations

import os
from pathlib import Path

from camlab.course.colab import DISTRIBUTION, INSTALL_SOURCE, setup_cell  # noqa: F401  (the one setting)

#: the chapters: file stem -> title
CHAPTERS = {
    "00_tour": "Tour and setup",
    "01_cam": "CAM with global average pooling",
    "02_gradcam": "Grad-CAM: the derivation",
    "03_guided_gradcam": "Guided Grad-CAM",
    "04_evaluation": "Evaluating explanations",
    "05_failure_analysis": "Failure analysis",
    "06_beyond_classification": "Beyond classification",
    "07_variants": "The variants: Grad-CAM++, Score-CAM, LayerCAM and more",
    "08_summary": "Summary and capstone",
    "09_transformers": "CAM on Vision Transformers",
}

#: The arithmetic the suite checks the notebooks under, unlike the one that stored their outputs (`camlab course
#: execute`: every core, the CPU's widest instructions): one thread, so sums run in another order, and oneDNN / MKL
#: held to AVX2, as on another CPU. A stored output that depends on the last bits of a float then fails in the
#: suite, not on a student's machine (the root conftest.py sets it for nbval's kernels;
#: tests/test_reproducible_outputs.py shows that it does change raw floats).
PERTURBED_ARITHMETIC = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2",
                        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

#: sections every chapter has (Markdown headings)
REQUIRED_SECTIONS = ("Learning goals", "Summary", "Exercises", "Further reading")


def fast_mode() -> bool:
    """True when ``CAMLAB_FAST=1``: notebooks shrink their longest loops (the lesson's assertion still runs)."""
    return os.environ.get("CAMLAB_FAST", "") not in ("", "0")


def notebooks_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "notebooks"


def execute_notebook(path: str | Path, timeout: int = 600) -> float:
    """Run a notebook top to bottom in place (fresh kernel, outputs stored) and return the seconds it took.

    A cell that fails stops the run (nbclient's ``CellExecutionError``). An error that IPython only *displays* while
    the cell itself succeeds (a figure or ``_repr_*_`` that fails to render) is stored too, and then raised as a
    ``RuntimeError`` naming the cell, so a stored traceback can never pass for a fresh run."""
    import time

    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    elapsed = time.perf_counter() - start
    nbformat.write(notebook, path)
    failed = [(index, output) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    if failed:
        index, output = failed[0]
        raise RuntimeError(f"{path.name}: cell {index} displayed an error while running: "
                           f"{output.get('ename')}: {output.get('evalue')}")
    return elapsed

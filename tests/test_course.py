"""The course is code: every chapter exists, has the same setup cell and sections, reads no network, was run."""
from __future__ import annotations

import json
import re

import pytest

from camlab.course import CHAPTERS, REQUIRED_SECTIONS, notebooks_dir, setup_cell
from camlab.exercises import ExerciseFailed, run_check

NOTEBOOKS = {path.stem: path for path in sorted(notebooks_dir().glob("*.ipynb"))}
NETWORK = re.compile(r"urlopen|requests\.|urllib|wget|curl |torch\.hub|hf_hub|download=True|load_state_dict_from_url"
                     r"|pretrained=True|https?://")


def cells(stem):
    return json.loads(NOTEBOOKS[stem].read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def test_every_chapter_exists():
    assert set(CHAPTERS) <= set(NOTEBOOKS), f"missing: {sorted(set(CHAPTERS) - set(NOTEBOOKS))}"


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_starts_with_the_shared_setup_cell(stem):
    first_code = next(c for c in cells(stem) if c["cell_type"] == "code")
    assert source(first_code) == setup_cell()


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_has_goals_summary_exercises_and_reading(stem):
    headings = [line for c in cells(stem) if c["cell_type"] == "markdown" for line in source(c).splitlines()
                if line.startswith("#")]
    for section in REQUIRED_SECTIONS:
        assert any(section.lower() in h.lower() for h in headings), f"{stem} has no '{section}' section"


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_reads_no_network(stem):
    code = [source(c) for c in cells(stem) if c["cell_type"] == "code"][1:]  # the setup cell may name the repo
    offenders = [line for block in code for line in block.splitlines() if NETWORK.search(line)]
    assert not offenders, offenders


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_chapter_was_run_top_to_bottom_without_errors_or_stderr(stem):
    code = [c for c in cells(stem) if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert all(isinstance(n, int) for n in counts), "cells without a stored run"
    assert counts == list(range(1, len(code) + 1)), "execution counts out of order"
    for cell in code:
        for output in cell["outputs"]:
            assert output["output_type"] != "error"
            assert output.get("name") != "stderr", f"stderr in: {source(cell)[:80]}"


@pytest.mark.parametrize("stem", sorted(CHAPTERS))
def test_code_exercises_have_a_marked_solution_and_a_check(stem):
    code = [source(c) for c in cells(stem) if c["cell_type"] == "code"]
    solutions = [i for i, text in enumerate(code) if "### BEGIN SOLUTION" in text]
    assert solutions, f"{stem} has no code exercise"
    for i in solutions:
        assert "### END SOLUTION" in code[i]
        assert "camlab.exercises.check_" in code[i + 1] or "exercises.check_" in code[i + 1], \
            f"the cell after solution {i} does not call a check"


def test_a_check_fails_on_a_wrong_answer_and_passes_on_the_right_one(monkeypatch, capsys):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    cases = [((2,), 4), ((3,), 9)]
    assert run_check("square", lambda v: v * v, cases, hint="multiply v by itself")
    wrong = run_check("square", lambda v: v + v, cases, hint="multiply v by itself")
    assert not wrong and "case 2 of 2" in wrong.message and "multiply" in wrong.message
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" in out


def test_strict_mode_turns_a_failed_check_into_an_error(monkeypatch):
    monkeypatch.setenv("CAMLAB_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseFailed):
        run_check("square", lambda v: v + 1, [((2,), 4)], hint="")

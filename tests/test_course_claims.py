"""Every number a chapter writes is printed by the chapter or quoted with its source, and no two chapters state
different verdicts on the same claim (camlab.course.claims, camlab.findings)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from camlab.course import CHAPTERS, notebooks_dir
from camlab.course.claims import collect_findings, markdown_numbers, unbacked_numbers
from camlab.findings import conflicts, record, table
from camlab.stats import verdict

CHAPTER_PATHS = [notebooks_dir() / f"{stem}.ipynb" for stem in CHAPTERS]


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", CHAPTER_PATHS, ids=lambda p: p.stem)
def test_every_number_in_the_text_is_printed_by_the_chapter_or_quoted_with_a_source(path):
    missing = unbacked_numbers(path)
    assert not missing, (f"{path.name}: numbers in the Markdown that no stored output prints at that precision "
                         f"and metadata.camlab.quoted does not declare (cell, number): {missing}")


def test_an_injected_unbacked_number_is_caught():
    notebook = _load(CHAPTER_PATHS[1])
    tampered = copy.deepcopy(notebook)
    cell = next(c for c in tampered["cells"] if c["cell_type"] == "markdown")
    cell["source"] = "".join(cell["source"]) + "\n\nThe pointing rate is 0.4242."
    index = tampered["cells"].index(cell)
    assert (index, "0.4242") in unbacked_numbers(tampered)
    assert unbacked_numbers(notebook) == [m for m in unbacked_numbers(tampered) if m != (index, "0.4242")]


def test_a_quoted_figure_needs_a_source_and_then_passes():
    notebook = {"cells": [{"cell_type": "markdown", "source": "Table 1 reports 56.51 for Grad-CAM."}],
                "metadata": {"camlab": {"quoted": {"56.51": "Selvaraju et al. 2017, Table 1"}}}}
    assert unbacked_numbers(notebook) == []
    notebook["metadata"]["camlab"]["quoted"]["56.51"] = " "
    with pytest.raises(ValueError, match="its source"):
        unbacked_numbers(notebook)


def test_numbers_match_at_the_precision_written_and_shares_in_either_spelling():
    def nb(text, output):
        return {"cells": [{"cell_type": "markdown", "source": text},
                          {"cell_type": "code", "outputs": [{"output_type": "stream", "text": output}]}]}

    assert unbacked_numbers(nb("hit rate 0.70", "rate 0.70 [0.61, 0.78]")) == []
    assert unbacked_numbers(nb("hit rate 0.70", "rate 0.701")) == [(0, "0.70")]
    assert unbacked_numbers(nb("hit rate 70%", "rate 0.70")) == []
    assert unbacked_numbers(nb("hit rate 0.70", "rate 70%")) == []
    assert unbacked_numbers(nb("hit rate 70.5%", "rate 0.705")) == []
    assert unbacked_numbers(nb("hit rate 7%", "rate 17%")) == [(0, "7%")]


def test_names_and_code_are_not_measurements():
    text = ("Section 3.2, Eq. 19 and Table 1; pytorch-grad-cam 1.5.7; a 95% interval; `x = 0.33`; "
            "[paper](https://arxiv.org/abs/1610.02391)\n## 2.1 Heading\nbut 0.021 is.")
    assert markdown_numbers(text) == ["0.021"]


def _findings_notebook(*lines):
    return {"cells": [{"cell_type": "code", "outputs": [{"output_type": "stream", "text": "\n".join(lines)}]}]}


def test_no_two_chapters_state_different_verdicts_on_the_same_claim():
    found = collect_findings(CHAPTER_PATHS)
    clashes = conflicts(found)
    assert not clashes, "chapters disagree:\n" + "\n".join(f"{a.chapter}: {a.line()}\n{b.chapter}: {b.line()}"
                                                          for a, b in clashes)


def test_an_injected_contradiction_between_chapters_is_caught(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 120)
    higher = record("pointing/x-vs-y", verdict(a + 0.2, a, delta=0.05), model="lab_vgg", layer="features.28",
                    show=False)
    same = record("pointing/x-vs-y", verdict(a, a + rng.normal(0, 0.001, 120), delta=0.05), model="lab_vgg",
                  layer="features.28", show=False)
    elsewhere = record("pointing/x-vs-y", verdict(a, a, delta=0.05), model="lab_vgg", layer="features.10",
                       show=False)
    for name, finding in (("05_a", higher), ("07_b", same), ("08_c", elsewhere)):
        (tmp_path / f"{name}.ipynb").write_text(json.dumps(_findings_notebook("other output", finding.line())))
    found = collect_findings(sorted(tmp_path.glob("*.ipynb")))
    assert [f.chapter for f in found] == ["05_a", "07_b", "08_c"]
    assert [(a.chapter, b.chapter) for a, b in conflicts(found)] == [("05_a", "07_b")]
    assert "| pointing/x-vs-y | higher |" in table(found)


def test_a_finding_names_where_it_holds():
    with pytest.raises(ValueError, match="where the verdict holds"):
        record("weakness-1/blobs", "holds", detail="x", model="", layer="features")
    with pytest.raises(ValueError, match="measurement behind it"):
        record("weakness-1/blobs", "holds", model="lab_cnn", layer="features")
    with pytest.raises(ValueError, match="lower-case id"):
        record("Weakness 1", "holds", detail="x", model="lab_cnn", layer="features")

r"""Every number a chapter writes must come from that chapter's outputs, or be a quoted figure with its source.

:func:`unbacked_numbers` lists the decimals and percentages in a notebook's Markdown cells (folded ``<details>``
answers included; inline code and URLs excluded) that appear neither in the notebook's stored text outputs at the
precision written nor among the quoted figures declared in the notebook's metadata::

    "metadata": {"camlab": {"quoted": {"56.51": "Selvaraju et al. 2017, Table 1 (VGG-16 top-1 loc. error)"}}}

A number matches an output when the same digits appear there as a whole number token (``0.70`` matches ``0.70``
but not ``0.701``); a percentage also matches the fraction with two more decimals (``70%`` ↔ ``0.70``,
``70.5%`` ↔ ``0.705``) and the other way round. Numbers that name things rather than measure them are skipped:
section, table, figure and equation numbers, arXiv ids, versions (``1.5.7``), heading numbers.

:func:`collect_findings` reads the ``finding [...]`` lines (:mod:`camlab.findings`) from the stored outputs of
the chapters.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from camlab.findings import Finding, parse

__all__ = ["collect_findings", "markdown_numbers", "output_text", "quoted_figures", "unbacked_numbers"]

_NUMBER = re.compile(r"(?<![\w.])(?P<num>\d+(?:\.\d+)?)(?P<pct>\s?%)?(?![\w]|\.\d)")
_NAMING = re.compile(r"(?:sections?|sec\.|§|tables?|fig\.|figures?|figs\.|eqs?\.|equations?|algorithm|arxiv:?|"
                     r"chapters?|ch\.|version|v|python|torch|step|cell|cells|exercise|question|doi:?)\s*$", re.IGNORECASE)
#: a confidence level names the interval, it does not measure anything
_LEVEL = re.compile(r"\s*(?:confidence|interval|CI\b|Wilson|bootstrap)", re.IGNORECASE)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
_URL = re.compile(r"\(?https?://\S+|\]\([^)]*\)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+[\d.]+\s", re.MULTILINE)


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def markdown_numbers(text: str) -> list[str]:
    """The measured-looking numbers of Markdown ``text``: decimals (``0.70``) and percentages (``70%``), in order."""
    text = _HEADING.sub(" ", _URL.sub(" ", _CODE.sub(" ", text)))
    found = []
    for match in _NUMBER.finditer(text):
        num, pct = match["num"], match["pct"]
        if "." not in num and not pct:
            continue  # whole numbers count things (chapters, layers, scenes); decimals and shares measure
        if _NAMING.search(text[max(0, match.start() - 14):match.start()]):
            continue
        if re.match(r"\.\d|/", text[match.end():match.end() + 2]):
            continue  # a version such as 1.5.7, a DOI such as 10.1109/...
        if pct and _LEVEL.match(text[match.end():match.end() + 12]):
            continue  # "95% interval"
        found.append(num + ("%" if pct else ""))
    return found


def output_text(notebook: dict) -> str:
    """All stored text outputs of a notebook (streams, text/plain, text/markdown, text/html) as one string."""
    parts = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if "text" in output:
                parts.append("".join(output["text"]) if isinstance(output["text"], list) else output["text"])
            for kind in ("text/plain", "text/markdown", "text/html"):
                value = output.get("data", {}).get(kind)
                if value is not None:
                    parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts)


def quoted_figures(notebook: dict) -> dict[str, str]:
    """The notebook's declared quoted figures: number → source (``metadata.camlab.quoted``)."""
    quoted = notebook.get("metadata", {}).get("camlab", {}).get("quoted", {})
    if not isinstance(quoted, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                               for k, v in quoted.items()):
        raise ValueError("metadata.camlab.quoted must map each quoted number (a string) to its source, e.g. "
                         "{'56.51': 'Selvaraju et al. 2017, Table 1'}")
    return quoted


def _forms(number: str) -> list[str]:
    """The spellings of ``number`` that back it in an output: itself, and a share as a fraction or a percent."""
    if number.endswith("%"):
        digits = number[:-1]
        frac = digits.partition(".")[2]
        value = f"{float(digits) / 100:.{len(frac) + 2}f}"
        return [number, value]
    whole, _, frac = number.partition(".")
    forms = [number]
    if whole == "0" and len(frac) >= 2:
        pct = f"{float(number) * 100:.{len(frac) - 2}f}%"
        forms.append(pct)
    return forms


def _backed(number: str, outputs: str) -> bool:
    for form in _forms(number):
        digits = form.rstrip("%")
        pattern = rf"(?<![\d.]){re.escape(digits)}" + (r"\s?%" if form.endswith("%") else r"(?![\d]|\.\d)")
        if re.search(pattern, outputs):
            return True
    return False


def unbacked_numbers(notebook: dict | str | Path) -> list[tuple[int, str]]:
    """``(cell index, number)`` for every number in the Markdown that no output and no quoted figure backs."""
    if not isinstance(notebook, dict):
        notebook = json.loads(Path(notebook).read_text(encoding="utf-8"))
    outputs, quoted = output_text(notebook), quoted_figures(notebook)
    missing = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        for number in markdown_numbers(_source(cell)):
            if number not in quoted and number.rstrip("%") not in quoted and not _backed(number, outputs):
                missing.append((index, number))
    return missing


def collect_findings(paths) -> list[Finding]:
    """Every ``finding [...]`` line in the stored outputs of the notebooks at ``paths``, tagged with the chapter
    (the file's stem), in the order of the files."""
    found = []
    for path in paths:
        path = Path(path)
        found += parse(output_text(json.loads(path.read_text(encoding="utf-8"))), path.stem)
    return found

r"""The course's findings: each measured claim printed as one line that the other chapters (and a test) can read.

A chapter that measures a claim ends the measurement with :func:`record`::

    v = camlab.stats.verdict(gradcam_hits, random_hits, delta=0.05)
    camlab.findings.record("pointing/gradcam-vs-random", v, model="lab_cnn", layer="features")

which prints ``finding [pointing/gradcam-vs-random] higher: +0.41 [0.33, 0.49], n=120, McNemar (exact) p=2e-20
(δ = 0.05) | lab_cnn @ features``. The stored outputs of the notebooks are then the table of findings:
:func:`camlab.course.claims.collect_findings` reads them back, :func:`conflicts` lists claims on which two chapters
state different verdicts for the same model and layer, and ``camlab course findings`` prints the table.

A claim that is not a comparison (a definition check, an identity) uses ``"holds"`` or ``"fails"`` with the
measurement as ``detail``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from camlab.stats import VERDICT_WORDS, Verdict

__all__ = ["Finding", "WORDS", "conflicts", "parse", "record", "table"]

#: the words a finding may state: a verdict's four, or whether a check holds
WORDS = VERDICT_WORDS + ("holds", "fails")

_CLAIM = re.compile(r"^[a-z0-9][a-z0-9+._/-]*$")
_LINE = re.compile(r"^finding \[(?P<claim>[^\]]+)\] (?P<word>[a-z]+)(?: within ±\S+)?: (?P<detail>.*) \| "
                   r"(?P<model>[^|@]+?) @ (?P<layer>[^|]+?)\s*$")


@dataclass(frozen=True)
class Finding:
    """One measured claim: its id, the verdict's word, the printed measurement, where it holds (model and layer)
    and the chapter that measured it (filled in by the reader of the notebooks)."""

    claim: str
    word: str
    detail: str
    model: str
    layer: str
    chapter: str = ""

    def line(self) -> str:
        return f"finding [{self.claim}] {self.word}: {self.detail} | {self.model} @ {self.layer}"


def record(claim: str, result: Verdict | str, *, model: str, layer: str, detail: str = "", digits: str = ".2f",
           show: bool = True) -> Finding:
    """Print (unless ``show=False``) and return the finding ``claim`` → ``result`` on ``model`` at ``layer``.

    ``result`` is a :class:`camlab.stats.Verdict` (its word and its printed difference are used) or ``"holds"`` /
    ``"fails"`` with the measurement in ``detail``. ``claim`` is a short lower-case id shared by every chapter that
    measures the same claim (``"weakness-1/separated-instances"``). ``model`` and ``layer`` say where the verdict
    holds; use ``"-"`` for a layer-free measurement."""
    if not isinstance(claim, str) or not _CLAIM.match(claim):
        raise ValueError(f"claim must be a short lower-case id of letters, digits and + . _ / -, such as "
                         f"'weakness-1/separated-instances'; got {claim!r}")
    for name, value in (("model", model), ("layer", layer)):
        if not isinstance(value, str) or not value.strip() or any(c in value for c in "|@\n"):
            raise ValueError(f"{name} must name where the verdict holds (no '|', '@' or newline), e.g. 'lab_vgg'; "
                             f"got {value!r}")
    if isinstance(result, Verdict):
        text = format(result, digits)
        word, detail = result.word, (text.split(": ", 1)[1] + (f"; {detail}" if detail else ""))
    elif result in ("holds", "fails"):
        if not detail:
            raise ValueError(f"a {result!r} finding needs the measurement behind it as detail=...")
        word = result
    else:
        raise ValueError(f"result must be a camlab.stats.Verdict or one of 'holds', 'fails'; got {result!r}")
    finding = Finding(claim, word, " ".join(detail.split()), model.strip(), layer.strip())
    if show:
        print(finding.line())
    return finding


def parse(text: str, chapter: str = "") -> list[Finding]:
    """The findings printed in ``text`` (one per ``finding [...]`` line), tagged with ``chapter``."""
    found = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match and match["word"] in WORDS:
            found.append(Finding(match["claim"], match["word"], match["detail"], match["model"], match["layer"],
                                 chapter))
    return found


def conflicts(findings: list[Finding]) -> list[tuple[Finding, Finding]]:
    """Pairs of findings on the same claim, model and layer whose words differ."""
    first: dict[tuple[str, str, str], Finding] = {}
    out = []
    for f in findings:
        key = (f.claim, f.model, f.layer)
        if key in first and first[key].word != f.word:
            out.append((first[key], f))
        first.setdefault(key, f)
    return out


def table(findings: list[Finding]) -> str:
    """A Markdown table of the findings: claim, verdict, measurement, model, layer, chapter."""
    rows = ["| claim | verdict | measurement | model | layer | chapter |", "|---|---|---|---|---|---|"]
    rows += [f"| {f.claim} | {f.word} | {f.detail} | {f.model} | {f.layer} | {f.chapter} |" for f in findings]
    return "\n".join(rows)

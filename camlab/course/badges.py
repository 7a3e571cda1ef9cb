"""``camlab course badges``: write what :mod:`camlab.course.colab` derives from ``INSTALL_SOURCE`` into the files.

Per notebook: the "Open in Colab" badge line of the first Markdown cell (the line after the title) and the setup
cell (the first code cell). In the README: the badge after each chapter's link in the course table. Then the
students' versions in ``notebooks/student/`` (:mod:`camlab.course.student`), which the badges open. Nothing else is
touched; notebooks are rewritten with nbformat, so their JSON layout stays the same. This is the release command:
run it after changing a chapter (a test fails while anything is out of date).
"""
from __future__ import annotations

import re
from pathlib import Path

from camlab.course.colab import BADGE_IMAGE, STUDENT_FOLDER, badge, setup_cell

_README_ROW = re.compile(r"^\| (?P<title>\[[^\]]+\])\(notebooks/(?:student/)?(?P<stem>[\w-]+)\.ipynb\)"
                         r"(?: \[!\[Open In Colab\]\([^)]*\)\]\([^)]*\))?(?: · \[[^\]]*\]\([^)]*\))?")


def with_badge(markdown: str, line: str) -> str:
    """``markdown`` with its badge line (one that shows the Colab badge image) replaced by ``line``, or with
    ``line`` inserted as a paragraph after the first line (the title) when there is none."""
    lines = markdown.split("\n")
    for i, old in enumerate(lines):
        if BADGE_IMAGE in old:
            lines[i] = line
            return "\n".join(lines)
    return "\n".join([lines[0], "", line, *lines[1:]])


def sync_notebook(notebook, stem: str) -> bool:
    """Set the badge of the first Markdown cell and the setup cell of an nbformat notebook; True if it changed."""
    markdown = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    new_markdown, new_code = with_badge(markdown.source, badge(stem)), setup_cell()
    changed = (markdown.source, code.source) != (new_markdown, new_code)
    markdown.source, code.source = new_markdown, new_code
    return changed


def sync_readme(text: str) -> str:
    """The README with each table row's chapter link pointing at the students' version and the current badge (the
    students' version in Colab, then the worked solutions) after it."""
    return "\n".join(_README_ROW.sub(
        lambda m: f"| {m['title']}({STUDENT_FOLDER}/{m['stem']}.ipynb) {badge(m['stem'])}", line)
        for line in text.split("\n"))


def sync_student_versions(root: Path, check: bool = False) -> list[Path]:
    """Bring ``root/notebooks/student/`` up to date with the instructor's notebooks (only list with ``check``)."""
    import nbformat

    from camlab.course.student import student_notebook

    folder, stale = root / STUDENT_FOLDER, []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = nbformat.writes(student_notebook(nbformat.read(path, as_version=4))) + "\n"
        target = folder / path.name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
            if not check:
                folder.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    return stale


def write_badges(root: Path, check: bool = False) -> list[Path]:
    """Bring ``root/notebooks/*.ipynb`` and ``root/README.md`` up to date (only list them with ``check``);
    return the files that were (or would be) changed."""
    import nbformat

    if not (root / "notebooks").is_dir():
        raise FileNotFoundError(f"{root} has no notebooks/ folder: give the root of a camlab checkout")
    stale = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        if sync_notebook(notebook, path.stem):
            stale.append(path)
            if not check:
                nbformat.write(notebook, path)
    stale += sync_student_versions(root, check)
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if sync_readme(text) != text:
            stale.append(readme)
            if not check:
                readme.write_text(sync_readme(text), encoding="utf-8")
    return stale

"""``camlab docs build``: the website (course chapters, user guide, API reference, glossary) built with Sphinx.

The build stages everything Sphinx reads into ``OUT/src`` and writes the site to ``OUT/html``:

- ``docs/`` of the checkout (the guide's pages, ``conf.py``, the ``camlab_docs`` extension, the glossary's terms);
- the chapters, ``notebooks/NN_name.ipynb``, as they are stored (never executed), each with a card after its title:
  the "Open in Colab" badge, where the notebook file is, a download link, its learning goals and the glossary;
- pages generated from the code, so that a new method or chapter appears without editing a page: the table of
  registered methods (``camlab.METHODS``), one API section per method class (its docstring, formulas included),
  the chapters' list and the glossary (``docs/_ext/glossary_terms.py``);
- MathJax 3 from the ``django-static-mathjax`` wheel into ``_static/mathjax``, so formulas render offline.

Staged files are only rewritten when their content changes. Sphinx reads every page afresh (``-E``: a warning
of a page that did not change would otherwise go unseen) with warnings as errors (a broken cross-reference, a
missing image or a bad docstring fails the build).
"""
from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

DEFAULT_OUT = "build/docs"
#: the parts of MathJax's es5 folder the site loads: the TeX + CHTML component, its fonts, the menu and a11y code
MATHJAX_PARTS = ("tex-chtml-full.js", "output/chtml/fonts/woff-v2", "ui", "a11y", "input/tex/extensions")


def checkout_root() -> Path:
    """The checkout holding ``docs/`` and ``notebooks/`` (the site is built from a checkout, not from a wheel)."""
    from camlab.course import notebooks_dir

    root = notebooks_dir().parent
    if not (root / "docs" / "conf.py").is_file():
        raise FileNotFoundError(f"{root} has no docs/conf.py: `camlab docs build` runs in a checkout of camlab")
    return root


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it already holds exactly that (keeps the file's time for Sphinx)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def copy_tree(source: Path, target: Path) -> None:
    """Copy ``source`` into ``target``, file by file, skipping files whose size and time are unchanged."""
    for path in sorted(source.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        destination = target / path.relative_to(source)
        stat = path.stat()
        if destination.is_file() and (destination.stat().st_size, destination.stat().st_mtime) == (
                stat.st_size, stat.st_mtime):
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def copy_mathjax(static: Path) -> None:
    """MathJax 3 (``tex-chtml-full.js``, fonts, menu) from the ``django-static-mathjax`` wheel into ``static``."""
    try:
        import mathjax
    except ImportError as error:
        raise ImportError("the site bundles MathJax from the 'django-static-mathjax' package: "
                          "pip install -e \".[docs]\"") from error
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    for part in MATHJAX_PARTS:
        source, target = es5 / part, static / "mathjax" / part
        if source.is_dir():
            copy_tree(source, target)
        elif not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def chapter_card(stem: str, first_markdown: str) -> str:
    """The Markdown card put after a chapter's title: badge, notebook file, download, learning goals, glossary."""
    from camlab.course.colab import BADGE_IMAGE, badge, repository

    owner, repo, ref = repository()
    file_url = f"https://github.com/{owner}/{repo}/blob/{ref}/notebooks/{stem}.ipynb"
    lines = [":::{admonition} This chapter", ":class: chapter-card", ""]
    if BADGE_IMAGE not in first_markdown:
        lines += [badge(stem), ""]
    lines += [f"- Notebook: [`notebooks/{stem}.ipynb`]({file_url}) in the repository, or "
              f"{{download}}`download it <{stem}.ipynb>` as shown here (with its stored outputs)",
              "- [Learning goals](#learning-goals) of this chapter",
              "- Terms: the first use of each links to the [glossary](../glossary.md) (English and Chinese)", ":::"]
    return "\n".join(lines)


def stage_chapter(path: Path, target: Path) -> None:
    """A chapter's notebook as stored, with its card after the first Markdown cell and no widget state (the site
    shows a widget's text form; its JavaScript would come from a CDN)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook.get("metadata", {}).pop("widgets", None)
    first = next(i for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "markdown")
    text = "".join(notebook["cells"][first]["source"])
    card = {"cell_type": "markdown", "id": "camlab-docs-chapter-card", "metadata": {},
            "source": chapter_card(path.stem, text)}
    notebook["cells"].insert(first + 1, card)
    write_if_changed(target / path.name, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def glossary_page(entries) -> str:
    """``glossary.md``: every entry with its synonyms, its Chinese name and its definition."""
    lines = ["# Glossary 术语表", "",
             "The course's terms in English and Chinese (the study notes the course was written from are Chinese). "
             "On every chapter page, the first use of a term links here.", "", "```{glossary}"]
    for terms, chinese, definition in sorted(entries, key=lambda entry: entry[0][0].lower()):
        lines += [*terms, f"  **{chinese}** — {definition}", ""]
    return "\n".join(lines + ["```", ""])


def methods_pages() -> dict[str, str]:
    """The generated method pages: ``api/methods.md`` (one section per registered class, from its docstring) and
    ``guide/_methods_table.md`` (name, class, paper: the docstring's first sentence)."""
    import camlab

    table = ["| name | class | from the docstring |", "|---|---|---|"]
    api = ["# Methods", "", "Every method registered in `camlab.METHODS`, in the course's order; generated from the "
           "registry and the docstrings, formulas included.", ""]
    for name, cls in camlab.METHODS.items():
        first = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        summary = first.split(". ")[0].rstrip(".").replace("|", "\\|")
        table.append(f"| `{name}` | {{py:class}}`camlab.{cls.__name__}` | {summary} |")
        api += [f"## `{name}`: {cls.__name__}", "", "```{eval-rst}", f".. autoclass:: camlab.{cls.__name__}",
                "   :members: __call__", "```", ""]
    return {"api/methods.md": "\n".join(api), "guide/_methods_table.md": "\n".join(table) + "\n"}


def stage(out: Path) -> Path:
    """Everything Sphinx reads, in ``out/src``; returns that folder."""
    from camlab.course import CHAPTERS

    root, src = checkout_root(), out / "src"
    copy_tree(root / "docs", src)
    for stem in CHAPTERS:
        stage_chapter(root / "notebooks" / f"{stem}.ipynb", src / "chapters")
    import sys

    sys.path.insert(0, str(root / "docs" / "_ext"))
    try:
        from glossary_terms import GLOSSARY
    finally:
        sys.path.remove(str(root / "docs" / "_ext"))
    write_if_changed(src / "glossary.md", glossary_page(GLOSSARY))
    for name, text in methods_pages().items():
        write_if_changed(src / name, text)
    copy_mathjax(src / "_static")
    return src


def build(out: str | Path = DEFAULT_OUT, strict: bool = True, quiet: bool = True) -> tuple[Path, float]:
    """Stage and build the site; returns ``(out/html, seconds)``. Raises ``RuntimeError`` when Sphinx fails (with
    ``strict``, on the first warning's report: every warning is an error)."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError as error:
        raise ImportError("building the site needs Sphinx: pip install -e \".[docs]\"") from error
    start = time.perf_counter()
    out = Path(out).resolve()
    src = stage(out)
    options = ["-b", "html", "-E", "-d", str(out / "doctrees"), *(["-W", "--keep-going"] if strict else []),
               *(["-q"] if quiet else [])]
    with warnings.catch_warnings():  # the Sphinx extensions' own deprecation notices are not the site's warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        status = build_main([*options, str(src), str(out / "html")])
    if status != 0:
        raise RuntimeError(f"the site did not build (warnings are errors; see the messages above): {src}")
    return out / "html", time.perf_counter() - start

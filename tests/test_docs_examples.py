"""Every example of the README and of the website's pages runs as written, offline.

- A page's ``python`` blocks run one after the other in one namespace (as a reader would paste them into one
  session), in a temporary folder. A block that needs a download says so on a line with ``# needs a download``:
  it runs up to that line, and the rest is only compiled.
- A ``bash`` block's ``camlab`` commands are parsed by camlab's own parsers (an option, sub-command or method that
  does not exist fails); the cheap ones (listing models, images, layers; explaining bundled images) also run. The
  long jobs (evaluate, train, executing notebooks, building the site: test_site.py builds it) and commands on files
  a reader brings (photo.jpg, clip.mp4) are parsed only. ``pip install`` lines must name extras that exist;
  ``pytest`` is this suite itself, ``jupyter lab`` and ``conda`` open or make an environment (not run).

``docs/guide/own-method.md`` runs in test_own_method.py, which also checks its maps against their formulas.
"""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CHECKED_ELSEWHERE = {ROOT / "docs" / "guide" / "own-method.md"}
DOWNLOAD = "# needs a download"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
#: camlab sub-commands that run in the test, besides ``explain`` on bundled images only
RUN = {"--version", "models", "images", "layers"}


def blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(page.read_text(encoding="utf-8")) if lang == language]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


PYTHON_PAGES = [page for page in PAGES if blocks(page, "python") and page not in CHECKED_ELSEWHERE]
BASH_PAGES = [page for page in PAGES if blocks(page, "bash")]


def runnable(code: str) -> tuple[str, str]:
    """``(the part that runs, the part only compiled)``: split at a line marked as needing a download."""
    lines = code.splitlines(keepends=True)
    cut = next((i for i, line in enumerate(lines) if DOWNLOAD in line), len(lines))
    return "".join(lines[:cut]), "".join(lines[cut:])


def test_the_pages_have_examples_to_check():
    assert {_name(page) for page in PYTHON_PAGES} >= {"README.md", "docs/guide/five-lines.md",
                                                      "docs/guide/layouts.md", "docs/guide/targets.md"}
    assert len(BASH_PAGES) >= 4


def test_a_block_marked_as_needing_a_download_runs_up_to_the_mark():
    assert runnable("a = 1\nb = load(url)  # needs a download: the weights\nc = b\n") == (
        "a = 1\n", "b = load(url)  # needs a download: the weights\nc = b\n")


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_name)
def test_python_examples_run(page, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for index, code in enumerate(blocks(page, "python")):
        run, compiled_only = runnable(code)
        exec(compile(run, f"{_name(page)} block {index + 1}", "exec"), namespace)
        compile(compiled_only, f"{_name(page)} block {index + 1} (after the download)", "exec")
    plt.close("all")
    if page.name in ("README.md", "five-lines.md"):  # "Five lines" as a script writes its figure
        assert (tmp_path / "cat-gradcam.png").stat().st_size > 10_000


def commands(code: str) -> list[list[str]]:
    """The commands of a bash block: one per line and per ``&&``, comments dropped."""
    found = []
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            end = words.index("&&") if "&&" in words else len(words)
            found.append(words[:end])
            words = words[end + 1:]
    return found


def check_pip(argv: list[str]) -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for word in argv[2:]:
        if match := re.fullmatch(r"\.\[([\w,-]+)\]", word):
            assert set(match[1].split(",")) <= extras, f"unknown extra in {' '.join(argv)}"


@pytest.mark.parametrize("page", BASH_PAGES, ids=_name)
def test_shell_examples_parse_and_the_cheap_ones_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for code in blocks(page, "bash"):
        for argv in commands(code):
            if argv[:2] == ["pip", "install"]:
                check_pip(argv)
            elif argv[0] == "camlab":
                run_camlab(argv[1:], capsys)
            else:
                assert argv[0] in ("jupyter", "conda", "python", "pytest"), f"{_name(page)}: unchecked command {argv}"


def run_camlab(args: list[str], capsys) -> None:
    """Parse ``camlab ARGS`` with camlab's parsers; run it when it is cheap and needs no file of the reader's."""
    import camlab
    from camlab import cli
    from camlab.evaluate.cli import build_parser as evaluate_parser

    line = "camlab " + " ".join(args)
    if args == ["--version"]:
        assert cli.main(args) == 0
        return
    if args[:1] == ["evaluate"]:
        evaluate_parser().parse_args([a for a in args[1:] if a != "--"])
        return
    parsed, unknown = cli.build_parser().parse_known_args(args)
    assert not unknown, f"{line}: unknown arguments {unknown}"
    bundled = args[:1] == ["explain"] and all(name in camlab.list_images() for name in parsed.inputs)
    if args[0] in RUN or bundled:
        status = cli.main([*args, "--no-progress"] if bundled else args)
        assert status == 0, f"{line}: exit {status}: {capsys.readouterr().err}"

"""Where Colab installs camlab from, and the text generated from that one setting.

``INSTALL_SOURCE`` is a pip requirement naming camlab's distribution (``torch-camlab``: the name ``camlab`` on PyPI
belongs to an unrelated package) and a GitHub repository with a tag. Everything the course publishes is derived from
it by ``camlab course badges``:

- every notebook's setup cell, which pip-installs ``INSTALL_SOURCE`` in Colab (in Colab camlab is not installed yet
  when that cell runs, so the cell carries the setting as text; a test keeps all cells equal to :func:`setup_cell`);
- every notebook's "Open in Colab" badge and the README's, which open the *students'* version of the notebook
  (no solutions, no hidden tests, no folded answers; ``notebooks/student/``, written by ``camlab course badges``)
  of the same repository and tag:
  ``https://colab.research.google.com/github/OWNER/REPO/blob/TAG/notebooks/student/NN_name.ipynb``, followed by a
  separate "worked solutions (self-study)" link to the instructor's notebook ``notebooks/NN_name.ipynb``.

In Colab the environment variable ``CAMLAB_INSTALL_SOURCE`` replaces the setting (anything ``pip install`` takes as
one argument: a wheel file, another git URL, ``torch-camlab==0.1.0``; set ``PIP_INDEX_URL`` for another index).

This module imports nothing but the standard library, so tools can read the setting without torch:
``runpy.run_path("camlab/course/colab.py")["INSTALL_SOURCE"]``.
"""
from __future__ import annotations

import re

#: camlab's distribution name on PyPI (the import name stays ``camlab``)
DISTRIBUTION = "torch-camlab"

#: where Colab installs camlab from: the one setting; its repository and tag also give the Colab badges' links
INSTALL_SOURCE = f"{DISTRIBUTION} @ git+https://github.com/camlab-course/camlab@v0.1.0"

#: the environment variable that replaces ``INSTALL_SOURCE`` inside a notebook's setup cell
OVERRIDE_VARIABLE = "CAMLAB_INSTALL_SOURCE"

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

_GITHUB = re.compile(r"git\+https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?@(?P<ref>[\w./-]+)$")


def repository(source: str = INSTALL_SOURCE) -> tuple[str, str, str]:
    """``(owner, repo, tag)`` of the GitHub repository named by an install source."""
    match = _GITHUB.search(source.strip())
    if match is None:
        raise ValueError(f"install source {source!r} names no GitHub repository and tag, which the Colab badges "
                         f"link to; write it as '{DISTRIBUTION} @ git+https://github.com/OWNER/REPO@TAG'")
    return match["owner"], match["repo"], match["ref"]


#: where the students' versions of the notebooks live in the repository (the badges open these)
STUDENT_FOLDER = "notebooks/student"
#: the words of the link to the instructor's notebook with the worked solutions
SOLUTIONS_LINK = "worked solutions (self-study)"


def colab_url(stem: str, source: str = INSTALL_SOURCE, folder: str = "notebooks") -> str:
    """The address that opens ``<folder>/<stem>.ipynb`` of the source's repository and tag in Colab."""
    owner, repo, ref = repository(source)
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/{ref}/{folder}/{stem}.ipynb"


def badge(stem: str, source: str = INSTALL_SOURCE) -> str:
    """The Markdown "Open in Colab" badge of a chapter (the students' version), then the worked-solutions link."""
    return (f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(stem, source, STUDENT_FOLDER)}) · "
            f"[{SOLUTIONS_LINK}]({colab_url(stem, source)})")


def setup_cell(source: str = INSTALL_SOURCE) -> str:
    """The first code cell of every notebook: in Colab it installs camlab and enables third-party widgets
    (``ClassQuiz`` and the explorers need Colab's custom widget manager); elsewhere it does nothing."""
    return (
        "# Setup: in Google Colab this installs camlab and enables its widgets; elsewhere it does nothing.\n"
        f"# Written by `camlab course badges` from camlab.course.INSTALL_SOURCE; {OVERRIDE_VARIABLE} overrides it.\n"
        "import os, subprocess, sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    CAMLAB_SOURCE = os.environ.get(\"{OVERRIDE_VARIABLE}\", \"{source}\")\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", CAMLAB_SOURCE], check=True)\n"
        "    from google.colab import output\n"
        "    output.enable_custom_widget_manager()"
    )

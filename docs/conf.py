"""Sphinx configuration of camlab's site. Build it with ``camlab docs build`` (see docs/guide/publishing.md): that
command stages this folder, the chapters' notebooks and the generated pages into ``build/docs/src`` and runs Sphinx
there with warnings as errors. The notebooks are rendered from their stored outputs, never executed."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "camlab"
author = "the camlab authors"
copyright = "the camlab authors, Apache-2.0"
language = "en"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "camlab_docs",
]

# notebooks: the stored outputs are the real outputs of the current code (nbval checks that in the test suite);
# the site shows them as they are and never runs a notebook
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # chapters start at "# NN · title" and may skip levels in their cells

# MathJax 3 from the django-static-mathjax wheel, copied into _static/mathjax by `camlab docs build`: no CDN
mathjax_path = "mathjax/tex-chtml-full.js"

autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": False}

html_theme = "sphinx_book_theme"
html_title = "camlab"
html_static_path = ["_static"]
html_css_files = ["camlab.css"]
html_theme_options = {
    "repository_url": "https://github.com/camlab-course/camlab",
    "use_repository_button": False,
    "use_download_button": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
html_copy_source = False
exclude_patterns = ["**/_*.md", "_build", "**.ipynb_checkpoints", "_templates"]

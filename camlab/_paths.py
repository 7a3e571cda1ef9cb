"""Where camlab's bundled files live: ``data/`` in a checkout, ``camlab/_data`` in an installed wheel."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The folder holding ``images/``, ``weights/`` and the other bundled files."""
    for candidate in (_PACKAGE / "_data", _PACKAGE.parent / "data"):
        if (candidate / "images").is_dir():
            return candidate
    raise FileNotFoundError(
        "camlab's bundled data was not found next to the package "
        f"(looked in {_PACKAGE / '_data'} and {_PACKAGE.parent / 'data'}); reinstall camlab"
    )


def weights_dir() -> Path:
    return data_dir() / "weights"


def images_dir() -> Path:
    return data_dir() / "images"

"""Progress bars: one wrapper around ``tqdm.auto`` (a widget in Jupyter, text in a terminal)."""
from __future__ import annotations

from collections.abc import Iterable


def progress_bar(iterable: Iterable, show: bool, **options) -> Iterable:
    """``iterable`` wrapped in a tqdm bar with ``options`` (``desc``, ``total``, ``unit``, ``leave`` ...) when
    ``show``, else ``iterable`` itself (tqdm is then not even imported)."""
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **options)

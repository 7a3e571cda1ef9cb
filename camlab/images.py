"""Bundled photos (public domain / CC0, from scikit-image and matplotlib) and the scenes composed from them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from camlab._paths import images_dir

IMAGE_SUFFIXES = (".jpg", ".png")


def list_images() -> list[str]:
    """Names accepted by :func:`load_image`."""
    return sorted(p.stem for p in images_dir().iterdir() if p.suffix in IMAGE_SUFFIXES)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: grayscale is replicated, alpha is composited on white, 16/32-bit integer and
    float images are rescaled from their own range."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        image = Image.fromarray(array.round().astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(name_or_path: str | Path) -> Image.Image:
    """A bundled image by name (see :func:`list_images`) or any image file by path, as an RGB PIL image."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        matches = [images_dir() / f"{name_or_path}{suffix}" for suffix in IMAGE_SUFFIXES]
        matches = [m for m in matches if m.exists()]
        if not matches:
            raise ValueError(
                f"no bundled image named {str(name_or_path)!r}; bundled images: {', '.join(list_images())} "
                "(or pass a path to an image file)"
            )
        path = matches[0]
    if not path.exists():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder, not an image file")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
    except UnidentifiedImageError as error:
        raise ValueError(f"{str(path)!r} is not an image file PIL can read (e.g. .jpg, .png)") from error
    return to_rgb(image)

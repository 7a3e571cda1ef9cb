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


# --- building the bundled set (run once; the results are committed to data/images) ---------------------------

def _square_crop(image: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
    return image.crop(box).resize((size, size), Image.Resampling.LANCZOS)


def _side_by_side(left: Image.Image, right: Image.Image, background=(118, 112, 104)) -> Image.Image:
    """Two square tiles side by side, centred on a square canvas so that a square model input is not squashed."""
    size = left.width
    canvas = Image.new("RGB", (2 * size, 2 * size), background)
    canvas.paste(left, (0, size // 2))
    canvas.paste(right, (size, size // 2))
    return canvas


#: source photos: name -> (package, loader, licence line)
SOURCES = {
    "cat": ("scikit-image", "chelsea", "CC0, Stefan van der Walt (skimage.data.chelsea)"),
    "coffee": ("scikit-image", "coffee", "CC0, Rachel Michetti, courtesy of Pikolo Espresso Bar (skimage.data.coffee)"),
    "astronaut": ("scikit-image", "astronaut", "public domain, NASA: Eileen Collins (skimage.data.astronaut)"),
    "rocket": ("scikit-image", "rocket", "public domain, SpaceX: DSCOVR launch on Falcon 9 (skimage.data.rocket)"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg", "public domain, U.S. Navy photo (matplotlib sample data)"),
}


def _source(name: str) -> Image.Image:
    package, loader, _ = SOURCES[name]
    if package == "scikit-image":
        import skimage.data

        return Image.fromarray(getattr(skimage.data, loader)())
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data(loader) as handle:
        return Image.open(handle).convert("RGB")


def build_bundled_images(out_dir: Path | None = None) -> dict[str, Path]:
    """Write every bundled image into ``out_dir`` (default: the data folder) and return their paths.

    ``cat_and_coffee`` (two classes in one image) and ``two_cats`` (two instances of one class) are composed
    from square crops of the cat and coffee photos, 224 px each, side by side on a neutral square canvas."""
    out_dir = Path(out_dir) if out_dir is not None else images_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = {name: _source(name) for name in SOURCES}
    cat_tile = _square_crop(photos["cat"], (60, 0, 360, 300), 224)
    coffee_tile = _square_crop(photos["coffee"], (170, 20, 420, 270), 224)
    images = dict(photos)
    images["cat_and_coffee"] = _side_by_side(cat_tile, coffee_tile)
    images["two_cats"] = _side_by_side(cat_tile, ImageOps.mirror(cat_tile))
    paths = {}
    for name, image in images.items():
        paths[name] = out_dir / f"{name}.jpg"
        image.convert("RGB").save(paths[name], quality=92, optimize=True)
    return paths

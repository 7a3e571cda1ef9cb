"""Building the bundled photos (run once; the results are committed to ``data/images``):
``python -m camlab.bundled_images`` or :func:`build_bundled_images`. A test rebuilds them and compares."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from camlab._paths import images_dir


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


if __name__ == "__main__":
    for name, path in build_bundled_images().items():
        print(f"{name}: {path}")

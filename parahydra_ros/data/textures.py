"""Natural photographs used as textures by the synthetic multi-view generator.

Two sources:

* the colour photographs inside scikit-image's wheel (``skimage/data/``: astronaut, chelsea,
  coffee, rocket), always present, nothing downloaded. The Middlebury "motorcycle" stereo pair
  bundled beside them is evaluation data and is never used as a texture;
* any directory of photographs given by the caller, normally the cache that
  ``scripts/fetch_textures.sh`` fills from Debian packages (``$PARAHYDRA_TEXTURES``, default
  ``~/.cache/parahydra/textures``): ~40 curated natural photographs from ``mate-backgrounds``,
  ``plasma-workspace-wallpapers`` and ``opencv-doc``.

``TextureBank`` keeps a Gaussian pyramid per photograph and cuts patches whose texel density
is 1-2 texels per rendered pixel, so rendered surfaces keep the detail of a real photograph
instead of being magnified (smeared) or heavily minified (aliased).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import skimage

from .folders import IMAGE_SUFFIXES, read_rgb

SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
"""Colour photographs of natural scenes bundled in the scikit-image wheel."""

MAX_DENSITY = 2.0
"""Largest texel density (texels per rendered pixel) that ``TextureBank.sample_patch`` draws."""


def bundled_photo_paths() -> list[Path]:
    """Return the paths of scikit-image's bundled colour photographs."""
    root = Path(skimage.__file__).parent / "data"
    paths = [root / name for name in SKIMAGE_PHOTOS]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"scikit-image wheel lacks its bundled photographs: {missing}")
    return paths


def default_texture_dir() -> Path:
    """Return the cache directory that ``scripts/fetch_textures.sh`` fills."""
    return Path(os.environ.get("PARAHYDRA_TEXTURES", Path.home() / ".cache/parahydra/textures"))


def find_textures(dirs: Iterable[str | Path] = (), *, bundled: bool = True) -> list[Path]:
    """List texture photographs: scikit-image's bundled photos, then every image under ``dirs``.

    Args:
        dirs: directories searched recursively for ``.png``/``.jpg``/``.jpeg`` files.
        bundled: include scikit-image's bundled colour photographs first.

    Returns:
        Paths, bundled ones first, then each directory's files in sorted order.
    """
    paths = bundled_photo_paths() if bundled else []
    for directory in map(Path, dirs):
        if not directory.is_dir():
            raise NotADirectoryError(f"texture directory {directory} does not exist")
        paths += sorted(
            path for path in directory.rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
    return paths


def load_texture(path: str | Path, max_side: int = 1024) -> np.ndarray:
    """Read a photograph as RGB uint8, downscaled (area filter) so its longer side is <= max_side."""
    image = read_rgb(path)
    scale = max_side / max(image.shape[:2])
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def load_textures(paths: Iterable[str | Path], max_side: int = 1024) -> list[np.ndarray]:
    """Read several photographs with ``load_texture``."""
    return [load_texture(path, max_side) for path in paths]


class TextureBank:
    """Gaussian pyramids of natural photographs from which texture patches are cut.

    Args:
        images: RGB uint8 photographs.
        min_side: the pyramid stops before a level's shorter side drops below this.
    """

    def __init__(self, images: Sequence[np.ndarray], min_side: int = 32) -> None:
        if not images:
            raise ValueError("TextureBank needs at least one image")
        self.pyramids: list[list[np.ndarray]] = []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"texture must be HxWx3 uint8, got {image.shape} {image.dtype}")
            levels = [np.ascontiguousarray(image)]
            while min(levels[-1].shape[:2]) // 2 >= min_side:
                levels.append(cv2.pyrDown(levels[-1]))
            self.pyramids.append(levels)

    @classmethod
    def from_dirs(cls, dirs: Iterable[str | Path] = (), *, max_side: int = 1024) -> TextureBank:
        """Bank of scikit-image's bundled photographs plus every image under ``dirs``."""
        return cls(load_textures(find_textures(dirs), max_side))

    @classmethod
    @functools.cache
    def default(cls, max_side: int = 1024) -> TextureBank:
        """Bundled photographs, plus the ``fetch_textures.sh`` cache when it exists.

        Loaded once per process and shared (read-only) by every rig that asks for it.
        """
        cache = default_texture_dir()
        return cls.from_dirs([cache] if cache.is_dir() else [], max_side=max_side)

    def __len__(self) -> int:
        return len(self.pyramids)

    def sample_patch(self, rng: np.random.Generator, height: float, width: float) -> np.ndarray:
        """Cut a random patch meant to cover ``height`` x ``width`` rendered pixels.

        A photograph and a pyramid level are drawn uniformly among those that hold a patch at
        density >= 1 texel per pixel, then a density in [1, 2] and a position. When no level
        is large enough, the largest patch of the right aspect ratio at full resolution is
        returned (it will be magnified).

        Returns:
            An HxWx3 uint8 view into the pyramid (do not modify).
        """
        levels = self.pyramids[int(rng.integers(len(self.pyramids)))]
        fitting = [lv for lv in levels if lv.shape[0] >= height and lv.shape[1] >= width]
        if fitting:
            level = fitting[int(rng.integers(len(fitting)))]
            top = min(MAX_DENSITY, level.shape[0] / height, level.shape[1] / width)
            density = rng.uniform(1.0, top)
        else:
            level = levels[0]
            density = min(level.shape[0] / height, level.shape[1] / width)
        rows = max(2, min(level.shape[0], round(density * height)))
        cols = max(2, min(level.shape[1], round(density * width)))
        y0 = int(rng.integers(level.shape[0] - rows + 1))
        x0 = int(rng.integers(level.shape[1] - cols + 1))
        return level[y0:y0 + rows, x0:x0 + cols]

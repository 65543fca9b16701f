"""Multi-view image groups stored as files.

Layouts (``MultiViewFolderDataset(layout=...)``):

``"groups"`` (default): ``ROOT/<group>/<view>.<png|jpg|jpeg>``, the views of one instant side
    by side, all of one size. Groups are sorted by name, views by file stem; sub-directories of
    a group (e.g. ``extra/`` with ground truth) are ignored. No split: ROOT is the split.

The public datasets, with the splits that LDMIC's ``lib/utils.py`` uses (spec section 6.3):

``"instereo2k"``: train ``ROOT/train/*/*/{left,right}.png``, test ``ROOT/test/*/{left,right}.png``.
``"cityscapes"``: ``ROOT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with its right view at
    the same path with ``leftImg8bit`` replaced by ``rightImg8bit``. Crop the rectification
    artefacts in training and test (``transforms.CropCityscapesArtefacts``).
``"wildtrack"``: ``ROOT/Image_subsets/C1..C7/<frame>.png`` (the public release; LDMIC's copy names
    the folder ``images``, also accepted). Frames with ``int(stem) <= 2000`` are train, the rest
    test. Views are the cameras ``C1``..``C7``; pass ``views=("C1", "C4")`` for LDMIC's stereo
    pair, ``views=("C1", ..., "CV")`` for the V-view test set.

Samples are float tensors in [0, 1] of shape (V, 3, H, W). An index may also be a key
``(index, view_ids)`` from ``transforms.AdaptiveViewBatchSampler``, which picks the views
(positions in ``view_names``) to load.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..codec.image_conversions import as_rgb
from ..codec.images import read_image
from .transforms import ViewKey, split_key, views_to_tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUTS = ("groups", "instereo2k", "cityscapes", "wildtrack")
WILDTRACK_CAMERAS = tuple(f"C{i}" for i in range(1, 8))
WILDTRACK_LAST_TRAIN_FRAME = 2000


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as an HxWx3 RGB uint8 array, for training: the codec's reader
    (``codec.images.read_image``) with a grey image expanded to three equal channels."""
    try:
        return as_rgb(read_image(path))
    except ValueError as error:
        raise OSError(f"cannot read image {path}: {error}") from error


@dataclass(frozen=True)
class ViewGroup:
    """The image files of one instant: ``paths[i]`` holds view ``view_names[i]``."""

    name: str
    view_names: tuple[str, ...]
    paths: tuple[Path, ...]


def folder_groups(root: str | Path) -> list[ViewGroup]:
    """Groups of the ``ROOT/<group>/<view>.<ext>`` layout; groups without images are skipped."""
    groups = []
    for directory in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        files = sorted(
            (p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.stem,
        )
        if files:
            groups.append(ViewGroup(directory.name, tuple(p.stem for p in files), tuple(files)))
    return groups


def instereo2k_groups(root: str | Path, split: str) -> list[ViewGroup]:
    """InStereo2K stereo pairs: ``train/*/*/`` or ``test/*/`` folders holding left/right.png."""
    pattern = {"train": "*/*", "test": "*"}[_check_split(split)]
    base = Path(root) / split
    return [
        ViewGroup(str(folder.relative_to(base)), ("left", "right"),
                  (folder / "left.png", folder / "right.png"))
        for folder in sorted(p for p in base.glob(pattern) if p.is_dir())
    ]


def cityscapes_groups(root: str | Path, split: str) -> list[ViewGroup]:
    """Cityscapes stereo pairs: ``leftImg8bit/<split>/*/*.png`` and their ``rightImg8bit`` twins."""
    root = Path(root)
    lefts = sorted((root / "leftImg8bit" / split).glob("*/*.png"))
    return [
        ViewGroup(f"{left.parent.name}/{left.stem.removesuffix('_leftImg8bit')}", ("left", "right"),
                  (left, Path(str(left).replace("leftImg8bit", "rightImg8bit"))))
        for left in lefts
    ]


def wildtrack_groups(root: str | Path, split: str) -> list[ViewGroup]:
    """WildTrack frames of all seven cameras, split by frame index (<= 2000: train)."""
    _check_split(split)
    root = Path(root)
    images = next((root / name for name in ("Image_subsets", "images") if (root / name).is_dir()),
                  root / "Image_subsets")
    groups = []
    for first in sorted((images / WILDTRACK_CAMERAS[0]).glob("*.png")):
        is_train = int(first.stem) <= WILDTRACK_LAST_TRAIN_FRAME
        if is_train == (split == "train"):
            groups.append(ViewGroup(first.stem, WILDTRACK_CAMERAS,
                                    tuple(images / cam / first.name for cam in WILDTRACK_CAMERAS)))
    return groups


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def discover_groups(root: str | Path, layout: str = "groups", split: str | None = None
                    ) -> list[ViewGroup]:
    """Groups of ``root`` in one of ``LAYOUTS``; ``split`` is required except for ``"groups"``."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if layout == "groups":
        if split is not None:
            raise ValueError("the 'groups' layout has no split: point root at the split folder")
        return folder_groups(root)
    if split is None:
        raise ValueError(f"layout {layout!r} needs split='train' or 'test'")
    finder = {"instereo2k": instereo2k_groups, "cityscapes": cityscapes_groups,
              "wildtrack": wildtrack_groups}[layout]
    return finder(root, split)


class MultiViewFolderDataset(Dataset):
    """Groups of same-size views read from files, as (V, 3, H, W) float tensors in [0, 1].

    Args:
        root: dataset root.
        views: view names to load, in this order (e.g. ``("C1", "C4")``); default: every view
            of the group, sorted by name.
        transform: applied to the stacked views, a (V, H, W, 3) uint8 array, before conversion
            to a tensor (see ``transforms``).
        layout: one of ``LAYOUTS`` (see the module docstring).
        split: ``"train"`` or ``"test"`` for the public-dataset layouts.
    """

    def __init__(self, root: str | Path, views: Sequence[str] | None = None,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None, *,
                 layout: str = "groups", split: str | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise NotADirectoryError(f"dataset root {self.root} does not exist")
        self.groups = discover_groups(self.root, layout, split)
        if not self.groups:
            raise FileNotFoundError(f"no image groups in {self.root} (layout {layout!r}, "
                                    f"split {split!r})")
        if views is not None:
            self.groups = [_select_views(group, tuple(views)) for group in self.groups]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, key: ViewKey) -> torch.Tensor:
        stacked = self.views(*split_key(key))
        if self.transform is not None:
            stacked = self.transform(stacked)
        return views_to_tensor(stacked)

    def view_count(self, index: int) -> int:
        """How many views group ``index`` has."""
        return len(self.groups[index].paths)

    def views(self, index: int, positions: Sequence[int] | None = None) -> np.ndarray:
        """Views of group ``index`` (those at ``positions``; default all), V×H×W×3 RGB uint8."""
        group = self.groups[index]
        paths = group.paths if positions is None else [group.paths[i] for i in positions]
        images = [read_rgb(path) for path in paths]
        if any(image.shape != images[0].shape for image in images):
            sizes = {str(p): image.shape[:2] for p, image in zip(paths, images)}
            raise ValueError(f"group {group.name!r} in {self.root} mixes image sizes: {sizes}")
        return np.stack(images)


def _select_views(group: ViewGroup, views: tuple[str, ...]) -> ViewGroup:
    missing = [view for view in views if view not in group.view_names]
    if missing:
        raise FileNotFoundError(f"group {group.name!r} lacks views {missing} "
                                f"(has {list(group.view_names)})")
    paths = tuple(group.paths[group.view_names.index(view)] for view in views)
    return ViewGroup(group.name, views, paths)

"""Group-aligned augmentation, tensor conversion and view-count sampling for multi-view training.

A group travels through the transforms as one stacked uint8 array of shape (V, H, W, 3). LDMIC
(``lib/utils.py``) concatenates the views on the channel axis before ``RandomCrop`` and the
flips; slicing the stacked array is the same thing: every view gets the same crop window and the
same flips, so the views stay pixel-aligned. Randomness comes from torch's global generator,
which ``DataLoader`` seeds per worker.

``AdaptiveViewBatchSampler`` reproduces LDMIC's ``AdaptiveMultiCameraImageDataset``: each batch
draws a view count V ~ U{min..max} and a random subset (in random order) of the cameras, the
same for every sample of the batch, so one model learns every view count.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

ViewKey = int | tuple[int, Sequence[int]]
"""A dataset index, or ``(index, view_ids)``: load only those views, in that order."""


def split_key(key: ViewKey) -> tuple[int, Sequence[int] | None]:
    """Return ``(index, view_ids)`` of a dataset key; ``view_ids`` is None for a plain index."""
    if isinstance(key, tuple):
        return int(key[0]), key[1]
    return int(key), None


def views_to_tensor(views: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """Convert HxWx3 uint8 views (stacked or a list) to a float (V, 3, H, W) tensor in [0, 1]."""
    stacked = np.ascontiguousarray(np.stack(views) if not isinstance(views, np.ndarray) else views)
    if stacked.ndim != 4 or stacked.shape[-1] != 3 or stacked.dtype != np.uint8:
        raise ValueError(f"expected (V, H, W, 3) uint8 views, got {stacked.shape} {stacked.dtype}")
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div_(255.0)


class Compose:
    """Apply transforms of stacked views in sequence."""

    def __init__(self, transforms: Sequence[Callable[[np.ndarray], np.ndarray]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, views: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            views = transform(views)
        return views

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class RandomCrop:
    """Crop the same random ``size`` window (height, width) out of every view."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, views: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``rng``: draw from this generator instead of torch's global one."""
        height, width = views.shape[1:3]
        rows, cols = self.size
        if height < rows or width < cols:
            raise ValueError(f"cannot crop {rows}x{cols} out of {height}x{width} views")
        top = _randint(height - rows + 1, rng)
        left = _randint(width - cols + 1, rng)
        return views[:, top:top + rows, left:left + cols]

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class RandomFlip:
    """Flip every view left-right with probability ``horizontal`` and up-down with ``vertical``."""

    def __init__(self, horizontal: float = 0.5, vertical: float = 0.5) -> None:
        self.horizontal = horizontal
        self.vertical = vertical

    def __call__(self, views: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``rng``: draw from this generator instead of torch's global one."""
        if _uniform(rng) < self.horizontal:
            views = views[:, :, ::-1]
        if _uniform(rng) < self.vertical:
            views = views[:, ::-1]
        return views

    def __repr__(self) -> str:
        return f"RandomFlip(horizontal={self.horizontal}, vertical={self.vertical})"


class RandomViewSwap:
    """Reverse the view order with probability ``p`` (LDMIC's stereo left/right swap)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, views: np.ndarray) -> np.ndarray:
        return views[::-1] if float(torch.rand(())) < self.p else views

    def __repr__(self) -> str:
        return f"RandomViewSwap(p={self.p})"


class MinimalCrop:
    """Centre-crop to the largest height and width divisible by ``min_div`` (LDMIC's test crop).

    The odd pixel of an odd margin goes to the bottom/right, as in LDMIC.
    """

    def __init__(self, min_div: int = 64) -> None:
        self.min_div = min_div

    def __call__(self, views: np.ndarray) -> np.ndarray:
        height, width = views.shape[1:3]
        rows, cols = height - height % self.min_div, width - width % self.min_div
        if rows == 0 or cols == 0:
            raise ValueError(f"{height}x{width} views are smaller than {self.min_div}")
        top, left = (height - rows) // 2, (width - cols) // 2
        return views[:, top:top + rows, left:left + cols]

    def __repr__(self) -> str:
        return f"MinimalCrop({self.min_div})"


class CropCityscapesArtefacts:
    """Cut Cityscapes' rectification borders: 2048x1024 -> 1792x704 (LDMIC, train and test)."""

    top, bottom, left, right = 64, 256, 128, 128

    def __call__(self, views: np.ndarray) -> np.ndarray:
        height, width = views.shape[1:3]
        if (height, width) != (1024, 2048):
            raise ValueError(f"expected 2048x1024 Cityscapes views, got {width}x{height}")
        return views[:, self.top:height - self.bottom, self.left:width - self.right]

    def __repr__(self) -> str:
        return "CropCityscapesArtefacts()"


def ldmic_transform(layout: str, split: str, num_views: int, crop_size: int = 256) -> Compose:
    """LDMIC's pipeline for a ``folders`` layout and split.

    Train: (Cityscapes artefact crop,) aligned random crop, random H/V flips, and for stereo
    (``num_views == 2``) a view-order swap with p=0.5. Test: the Cityscapes artefact crop for
    Cityscapes, ``MinimalCrop(64)`` otherwise.
    """
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    if layout == "cityscapes":
        steps.append(CropCityscapesArtefacts())
    if split == "train":
        steps += [RandomCrop(crop_size), RandomFlip()]
        if num_views == 2:
            steps.append(RandomViewSwap())
    elif split == "test":
        if layout != "cityscapes":
            steps.append(MinimalCrop(64))
    else:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return Compose(steps)


class AdaptiveViewBatchSampler(Sampler[list[tuple[int, tuple[int, ...]]]]):
    """Batches of ``(index, view_ids)`` keys with a random view count and camera subset per batch.

    Use as ``DataLoader(dataset, batch_sampler=sampler)`` with a dataset that accepts such keys
    (``MultiViewFolderDataset``, ``SyntheticMultiViewDataset``); the default collate then gives
    (B, V, 3, H, W) batches.

    Args:
        dataset_size: number of groups in the dataset.
        batch_size: samples per batch.
        num_views: cameras per group in the dataset.
        min_views, max_views: bounds of the per-batch view count (max defaults to ``num_views``).
        shuffle: visit the groups in a random order each epoch.
        drop_last: drop the last incomplete batch.
        seed: seed of the sampler's own generator (epochs differ, runs repeat).
    """

    def __init__(self, dataset_size: int, batch_size: int, num_views: int, *, min_views: int = 2,
                 max_views: int | None = None, shuffle: bool = True, drop_last: bool = True,
                 seed: int = 0) -> None:
        max_views = num_views if max_views is None else max_views
        if not 1 <= min_views <= max_views <= num_views:
            raise ValueError(f"need 1 <= min_views ({min_views}) <= max_views ({max_views}) "
                             f"<= num_views ({num_views})")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.num_views = num_views
        self.min_views = min_views
        self.max_views = max_views
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        if self.drop_last:
            return self.dataset_size // self.batch_size
        return -(-self.dataset_size // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, ...]]]]:
        order = (torch.randperm(self.dataset_size, generator=self.generator).tolist()
                 if self.shuffle else list(range(self.dataset_size)))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            count = int(torch.randint(self.min_views, self.max_views + 1, (),
                                      generator=self.generator))
            views = tuple(torch.randperm(self.num_views, generator=self.generator)[:count].tolist())
            yield [(index, views) for index in order[start:start + self.batch_size]]


def _randint(high: int, rng: np.random.Generator | None) -> int:
    return int(rng.integers(high)) if rng is not None else int(torch.randint(high, ()))


def _uniform(rng: np.random.Generator | None) -> float:
    return float(rng.random()) if rng is not None else float(torch.rand(()))

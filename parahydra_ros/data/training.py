"""Batches for ``parahydra train``: groups of views, a quality per sample, reproducible by step.

A batch is drawn from ``(seed, rank, step)`` alone, so a resumed run sees exactly the
data it would have seen, and DDP ranks see different data. Sources:

* ``photos``: single views, random crops of natural photographs at random scales
  (single-view pretraining of ``g_a``, Para-EM and the decoder);
* ``synthetic``: groups rendered by :class:`~parahydra_ros.data.synthetic.SyntheticRig`
  (real parallax and occlusions; textures from the same photographs);
* ``folder:ROOT[:layout]``: a :class:`~parahydra_ros.data.folders.MultiViewFolderDataset`;
* ``bag:PATH:TOPIC,TOPIC…``: the complete approximate-time groups of those camera topics
  of a rosbag (:class:`~parahydra_ros.data.bag_groups.BagGroupDataset`).

Validation always uses held-back synthetic groups, so curves of runs on different
sources compare.

Every sample of a batch has the same number of views, drawn in ``min..max`` (LDMIC).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from .bag_groups import BagGroupDataset, parse_bag_source
from .folders import MultiViewFolderDataset
from .synthetic import SyntheticRig
from .textures import TextureBank
from .transforms import RandomCrop, RandomFlip, views_to_tensor

VALIDATION_SEED = 1_000_003


class TrainingBatches:
    """Draws (x B×V×3×crop×crop, quality B) for a training step."""

    def __init__(self, source: str, batch_size: int, crop: int, views: tuple[int, int],
                 num_qualities: int, seed: int = 0, texture_dirs: Sequence[str | Path] = (),
                 validation_groups: int = 4):
        self.source = source
        self.batch_size = batch_size
        self.crop = crop
        self.min_views, self.max_views = views
        self.num_qualities = num_qualities
        self.seed = seed
        self.texture_dirs = [str(d) for d in texture_dirs]
        self.textures = TextureBank.from_dirs(texture_dirs) if texture_dirs else TextureBank.default()
        self._recorded = _recorded_dataset(source)
        self._validation = self._validation_groups(validation_groups)

    def describe(self) -> dict:
        """What the run trained on (recorded in checkpoints and the model card)."""
        return {"source": self.source, "crop": self.crop, "views": [self.min_views, self.max_views],
                "textures": len(self.textures), "texture_dirs": self.texture_dirs, "seed": self.seed}

    def batch(self, step: int, rank: int = 0) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, rank, step])
        num_views = int(rng.integers(self.min_views, self.max_views + 1))
        groups = [self._group(rng, num_views) for _ in range(self.batch_size)]
        quality = torch.from_numpy(rng.integers(self.num_qualities, size=self.batch_size))
        return torch.stack(groups), quality

    def validation(self) -> list[Tensor]:
        """Held-back groups (1×V×3×256×256), identical in every run."""
        return self._validation

    # -- sources -------------------------------------------------------------------------
    def _group(self, rng: np.random.Generator, num_views: int) -> Tensor:
        if self.source == "photos":
            views = self._photo_crop(rng)[None].repeat(num_views, axis=0)
        elif self.source == "synthetic":
            rig = SyntheticRig(num_views, self.crop, self.crop, textures=self.textures,
                               layout="grid" if rng.random() < 0.25 else "horizontal")
            views = np.stack(rig.render_group(int(rng.integers(2**31))).views)
        else:
            index = int(rng.integers(len(self._recorded)))
            count = self._recorded.view_count(index)
            chosen = rng.choice(count, size=min(num_views, count), replace=False)
            views = RandomCrop(self.crop)(self._recorded.views(index, sorted(chosen)), rng)
        return views_to_tensor(RandomFlip()(views, rng))

    def _photo_crop(self, rng: np.random.Generator) -> np.ndarray:
        """A crop of a photograph, resampled by a random factor in [0.5, 1] (never upsampled)."""
        scale = rng.uniform(0.5, 1.0)
        patch = self.textures.sample_patch(rng, self.crop / scale, self.crop / scale)
        return cv2.resize(patch, (self.crop, self.crop), interpolation=cv2.INTER_AREA)

    def _validation_groups(self, count: int) -> list[Tensor]:
        views = max(self.min_views, min(self.max_views, 3))
        rig = SyntheticRig(views, 256, 256, textures=self.textures)
        return [views_to_tensor(np.stack(rig.render_group(VALIDATION_SEED + i).views))[None]
                for i in range(count)]


def _recorded_dataset(source: str) -> MultiViewFolderDataset | BagGroupDataset | None:
    kind, _, spec = source.partition(":")
    if kind == "folder":
        root, _, layout = spec.partition(":")
        layout = layout or "groups"  # the public datasets' layouts train on their train split
        return MultiViewFolderDataset(root, layout=layout, split=None if layout == "groups" else "train")
    if kind == "bag":
        return BagGroupDataset(*parse_bag_source(spec))
    if source not in ("photos", "synthetic"):
        raise ValueError(f"unknown training source {source!r} (photos, synthetic, folder:ROOT[:layout], "
                         "bag:PATH:TOPIC,TOPIC...)")
    return None

"""Batches for ``parahydra train``: groups of views, a quality per sample, reproducible by step.

A batch is drawn from ``(seed, rank, step)`` alone, so a resumed run sees exactly the
data it would have seen, and DDP ranks see different data. Sources:

* ``photos``: single views, random crops of natural photographs at random scales
  (single-view pretraining of ``g_a``, Para-EM and the decoder);
* ``synthetic``: groups rendered by :class:`~parahydra_ros.data.synthetic.SyntheticRig`
  (real parallax and occlusions; textures from the same photographs);
* ``mixed``: a batch of one view is ``photos``, a batch of several views ``synthetic``,
  so one run trains the single-camera path on real photographs and the fusion on
  groups with real parallax;
* ``folder:ROOT[:layout]``: a :class:`~parahydra_ros.data.folders.MultiViewFolderDataset`;
* ``bag:PATH:TOPIC,TOPIC…``: the complete approximate-time groups of those camera topics
  of a rosbag (:class:`~parahydra_ros.data.bag_groups.BagGroupDataset`).

Validation always uses held-back synthetic groups, so curves of runs on different
sources compare, plus, when photo folders are given (``texture_dirs``), centre crops of
every 40th photograph, held back from training: real pictures on which the trainer
measures the transforms' quality without quantisation.

Every sample of a batch has the same number of views, drawn in ``min..max`` (LDMIC).
A photograph has no partner view, so ``photos`` takes one view only. With
``unrelated_rate`` > 0, that fraction of multi-view groups gets its last view replaced
by a view of another group of the batch: the decoder must learn that such a side
view carries nothing (the control of ``parahydra eval --control``).
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
from .textures import TextureBank, find_textures, load_textures
from .transforms import RandomCrop, RandomFlip, views_to_tensor

VALIDATION_SEED = 1_000_003
HELD_OUT_EVERY = 40
"""Every 40th photograph of the training folders is held back for validation."""
VALIDATION_PHOTO_SIZE = 256


class TrainingBatches:
    """Draws (x B×V×3×crop×crop, quality B) for a training step."""

    def __init__(self, source: str, batch_size: int, crop: int, views: tuple[int, int],
                 num_qualities: int, seed: int = 0, texture_dirs: Sequence[str | Path] = (),
                 validation_groups: int = 4, unrelated_rate: float = 0.0):
        if source == "photos" and views[1] > 1:
            raise ValueError("a photograph is a single view: use --data photos with --views 1, "
                             "or --data mixed for single views of photos and synthetic groups")
        if not 0.0 <= unrelated_rate <= 1.0:
            raise ValueError(f"unrelated_rate must be in [0, 1], got {unrelated_rate}")
        self.source = source
        self.batch_size = batch_size
        self.crop = crop
        self.min_views, self.max_views = views
        self.num_qualities = num_qualities
        self.seed = seed
        self.unrelated_rate = unrelated_rate
        self.texture_dirs = [str(d) for d in texture_dirs]
        held_out: list[Path] = []
        if texture_dirs:
            paths = find_textures(texture_dirs)
            held_out = paths[HELD_OUT_EVERY - 1::HELD_OUT_EVERY]
            self.textures = TextureBank(load_textures(p for p in paths if p not in held_out))
        else:
            self.textures = TextureBank.default()
        self._recorded = _recorded_dataset(source)
        self._validation = self._validation_groups(validation_groups)
        self._validation_photos = [_centre_crop(image, VALIDATION_PHOTO_SIZE)
                                   for image in load_textures(held_out)]

    def describe(self) -> dict:
        """What the run trained on (recorded in checkpoints and the model card)."""
        return {"source": self.source, "crop": self.crop, "views": [self.min_views, self.max_views],
                "textures": len(self.textures), "texture_dirs": self.texture_dirs, "seed": self.seed,
                "unrelated_rate": self.unrelated_rate,
                "validation_photos": len(self._validation_photos)}

    def batch(self, step: int, rank: int = 0) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, rank, step])
        num_views = int(rng.integers(self.min_views, self.max_views + 1))
        groups = torch.stack([self._group(rng, num_views) for _ in range(self.batch_size)])
        quality = torch.from_numpy(rng.integers(self.num_qualities, size=self.batch_size))
        if self.unrelated_rate and num_views > 1 and self.batch_size > 1:
            swap = np.flatnonzero(rng.random(self.batch_size) < self.unrelated_rate)
            donors = (swap + 1) % self.batch_size
            groups[swap, -1] = groups[donors, 0]
        return groups, quality

    def true_pairs(self, x: Tensor) -> Tensor:
        """``B`` booleans for a batch from :meth:`batch`: views 0 and 1 show the same scene.

        The unrelated swap copies the next group's first view into the last slot, so only
        two-view groups can lose their pair; such a copy marks them.
        """
        batch, views = x.shape[:2]
        pairs = torch.ones(batch, dtype=torch.bool, device=x.device)
        if self.unrelated_rate and views == 2 and batch > 1:
            for b in range(batch):
                pairs[b] = not torch.equal(x[b, 1], x[(b + 1) % batch, 0])
        return pairs

    def validation(self) -> list[Tensor]:
        """Held-back groups (1×V×3×256×256), identical in every run."""
        return self._validation

    def validation_photos(self) -> list[Tensor]:
        """Held-back real photographs (1×1×3×256×256), empty without photo folders."""
        return [views_to_tensor(image[None])[None] for image in self._validation_photos]

    # -- sources -------------------------------------------------------------------------
    def _group(self, rng: np.random.Generator, num_views: int) -> Tensor:
        if self.source == "photos" or (self.source == "mixed" and num_views == 1):
            views = self._photo_crop(rng)[None]
        elif self.source in ("synthetic", "mixed"):
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
    if source not in ("photos", "synthetic", "mixed"):
        raise ValueError(f"unknown training source {source!r} (photos, synthetic, mixed, folder:ROOT[:layout], "
                         "bag:PATH:TOPIC,TOPIC...)")
    return None


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size``×``size`` of an image (its shorter side scaled down to ``size`` first
    when it is smaller)."""
    short = min(image.shape[:2])
    if short < size:
        scale = size / short
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])

"""The side-view control of ``parahydra eval --control``: is the joint gain side information?

A joint decoder can beat separate decoding for two reasons: the other cameras carry
information about this view, or the fusion path adds decoder capacity whenever any
second picture is present. Only the first is multi-view coding. The control decodes
every view's *same* bitstream four ways and compares the PSNR of that view:

* ``partner``: with its group's other views (joint decoding as deployed);
* ``unrelated``: with views of another scene in their place, of the same size — the
  same views of the next group, resized; for a one-group set the partners rotated
  by 180° (same colours and textures, no geometric correspondence);
* ``self``: with the view itself as its only side view;
* ``alone``: without side views.

The fusion uses the other cameras when ``partner`` beats ``unrelated`` clearly and
``unrelated`` is not better than ``alone``. Issue 12's acceptance: partner − unrelated
≥ 0.5 dB at every rate point and unrelated − alone ≤ 0.1 dB.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..codec.api import ParaHydraCodec
from ..codec.metrics import psnr

WAYS = ("partner", "unrelated", "self", "alone")
MIN_PARTNER_GAIN_DB = 0.5  # partner over unrelated
MAX_UNRELATED_GAIN_DB = 0.1  # unrelated over alone


@dataclass(frozen=True)
class ControlPoint:
    """Mean PSNR (dB) of the views of every group decoded four ways, at one quality."""

    quality: int
    bpp: float  # of the views' own payloads (the side views' bytes are not counted)
    partner: float
    unrelated: float
    self: float
    alone: float

    @property
    def partner_over_unrelated(self) -> float:
        return self.partner - self.unrelated

    @property
    def unrelated_over_alone(self) -> float:
        return self.unrelated - self.alone

    @property
    def passes(self) -> bool:
        return (self.partner_over_unrelated >= MIN_PARTNER_GAIN_DB
                and self.unrelated_over_alone <= MAX_UNRELATED_GAIN_DB)

    def as_dict(self) -> dict:
        return {**vars(self), "partner_over_unrelated": self.partner_over_unrelated,
                "unrelated_over_alone": self.unrelated_over_alone, "passes": self.passes}


def unrelated_views(groups: Sequence[Sequence[np.ndarray]], index: int) -> list[np.ndarray]:
    """Stand-ins of another scene for the views of group ``index``, each of its view's size."""
    group = groups[index]
    if len(groups) == 1:
        return [np.ascontiguousarray(view[::-1, ::-1]) for view in group]
    other = groups[(index + 1) % len(groups)]
    stand_ins = []
    for k, view in enumerate(group):
        source = other[k % len(other)]
        if source.ndim != view.ndim:  # mono and RGB groups mixed: match the view's channels
            source = source.mean(axis=2).astype(np.uint8) if source.ndim == 3 else np.repeat(
                source[..., None], 3, axis=2)
        stand_ins.append(cv2.resize(source, (view.shape[1], view.shape[0]), interpolation=cv2.INTER_AREA))
    return stand_ins


def side_view_control(codec: ParaHydraCodec, groups: Sequence[Sequence[np.ndarray]],
                      qualities: Sequence[int] | None = None) -> list[ControlPoint]:
    """The control at each quality over every view of every group with ≥ 2 views."""
    qualities = range(codec.num_qualities) if qualities is None else qualities
    indexed = [(g, group) for g, group in enumerate(groups) if len(group) > 1]
    if not indexed:
        raise ValueError("the side-view control needs groups of at least two views")
    points = []
    for quality in qualities:
        scores = {way: [] for way in WAYS}
        bits = pixels = 0
        for g, group in indexed:
            coded = [codec.encode(view, quality) for view in group]
            stand_ins = [codec.encode(view, quality) for view in unrelated_views(groups, g)]
            joint = codec.decode(coded)
            for i, view in enumerate(group):
                others = [k for k in range(len(group)) if k != i]
                decoded = {
                    "partner": joint[i],
                    "unrelated": codec.decode([coded[i], *(stand_ins[k] for k in others)])[0],
                    "self": codec.decode([coded[i], coded[i]])[0],
                    "alone": codec.decode([coded[i]])[0],
                }
                for way in WAYS:
                    scores[way].append(psnr(view, decoded[way]))
                bits += 8 * len(coded[i])
                pixels += view.shape[0] * view.shape[1]
        points.append(ControlPoint(quality=quality, bpp=bits / pixels,
                                   **{way: float(np.mean(values)) for way, values in scores.items()}))
    return points


def print_control(points: Sequence[dict]) -> None:
    """The control as a table (``points``: :meth:`ControlPoint.as_dict` rows)."""
    print(f"side-view control (PSNR dB; pass: partner-unrelated >= {MIN_PARTNER_GAIN_DB}, "
          f"unrelated-alone <= {MAX_UNRELATED_GAIN_DB})")
    print(f"{'q':>2}{'bpp':>7}{'partner':>9}{'unrel.':>8}{'self':>8}{'alone':>8}"
          f"{'p-u':>7}{'u-a':>7}  pass")
    for p in points:
        print(f"{p['quality']:>2}{p['bpp']:>7.3f}{p['partner']:>9.2f}{p['unrelated']:>8.2f}{p['self']:>8.2f}"
              f"{p['alone']:>8.2f}{p['partner_over_unrelated']:>7.2f}{p['unrelated_over_alone']:>7.2f}  "
              f"{'yes' if p['passes'] else 'no'}")

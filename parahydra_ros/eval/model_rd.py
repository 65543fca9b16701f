"""ParaHydra's rate–distortion points over groups of views: joint and separate decoding.

Every byte of every view's payload counts (container header included). Joint and
separate decoding use the SAME bitstreams, so their difference is the decoder's
inter-view gain alone.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..codec.api import ParaHydraCodec
from ..codec.metrics import ms_ssim, psnr
from .rd import RDPoint

MODES = ("joint", "separate")


def model_rd_points(codec: ParaHydraCodec, groups: Sequence[Sequence[np.ndarray]],
                    qualities: Sequence[int] | None = None) -> dict[str, list[RDPoint]]:
    """RD points per decoding mode: for each quality, pixel-weighted bpp and mean metrics."""
    qualities = range(codec.num_qualities) if qualities is None else qualities
    pixels = sum(image.shape[0] * image.shape[1] for group in groups for image in group)
    curves: dict[str, list[RDPoint]] = {mode: [] for mode in MODES}
    for quality in qualities:
        payloads = [[codec.encode(image, quality) for image in group] for group in groups]
        bits = 8.0 * sum(len(p) for group in payloads for p in group)
        for mode in MODES:
            scores = [
                (psnr(image, decoded), ms_ssim(image, decoded))
                for group, coded in zip(groups, payloads)
                for image, decoded in zip(group, codec.decode(coded, joint=mode == "joint"))
            ]
            curves[mode].append(RDPoint(quality=quality, bpp=bits / pixels,
                                        psnr=float(np.mean([s[0] for s in scores])),
                                        ms_ssim=float(np.mean([s[1] for s in scores]))))
    return curves

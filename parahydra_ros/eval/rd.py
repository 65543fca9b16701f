"""Rate-distortion points of a codec over a set of images, and the rate a curve needs for a PSNR."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

from parahydra_ros.eval.anchors import Anchor
from parahydra_ros.codec.metrics import ms_ssim, psnr


@dataclass(frozen=True)
class RDPoint:
    """One setting of a codec over an image set.

    ``bpp`` is all coded bits over all pixels (a pixel-weighted mean); ``psnr``
    (dB) and ``ms_ssim`` are plain means of the per-image values.
    """

    quality: int
    bpp: float
    psnr: float
    ms_ssim: float


def anchor_rd_points(
    images: Sequence[np.ndarray], anchor: Anchor, qualities: Sequence[int] | None = None,
    cache: Path | None = None,
) -> list[RDPoint]:
    """Code every ``HxWx3`` ``uint8`` RGB image at each quality (default: the anchor's sweep).

    With ``cache`` (a folder), each image's (bytes, PSNR, MS-SSIM) at each setting is kept
    in a JSON file named by a hash of the image's pixels, the anchor's name and settings
    and the quality, so evaluating another checkpoint on the same images does not code
    them again. Delete the folder after upgrading an anchor's encoder.
    """
    if not images:
        raise ValueError("anchor_rd_points needs at least one image")
    pixels = sum(image.shape[0] * image.shape[1] for image in images)
    points = []
    for quality in anchor.qualities if qualities is None else qualities:
        scores = [_anchor_scores(image, anchor, quality, cache) for image in images]
        points.append(
            RDPoint(
                quality=quality,
                bpp=8.0 * sum(s[0] for s in scores) / pixels,
                psnr=float(np.mean([s[1] for s in scores])),
                ms_ssim=float(np.mean([s[2] for s in scores])),
            )
        )
    return points


def _anchor_scores(image: np.ndarray, anchor: Anchor, quality: int, cache: Path | None
                   ) -> tuple[int, float, float]:
    """(coded bytes, PSNR, MS-SSIM) of one image at one anchor setting, cached when asked."""
    path = None
    if cache is not None:
        key = hashlib.sha256(repr((anchor.name, sorted(vars(anchor).items()), quality,
                                   image.shape, str(image.dtype))).encode())
        key.update(np.ascontiguousarray(image).tobytes())
        path = cache / f"{anchor.name}-{key.hexdigest()[:32]}.json"
        if path.is_file():
            return tuple(json.loads(path.read_text()))
    coded = anchor.encode_decode(image, quality)
    scores = (coded.num_bytes, psnr(image, coded.decoded), ms_ssim(image, coded.decoded))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(scores))
    return scores


def bpp_at_psnr(points: Sequence[RDPoint], target_psnr: float) -> float:
    """Bits per pixel the RD curve needs to reach ``target_psnr``.

    Interpolates log-bpp against PSNR with a monotone piecewise cubic (PCHIP)
    through the curve's non-dominated points (those with a higher PSNR than
    every cheaper point), so the result rises with the target. Targets outside
    the curve's PSNR range raise ``ValueError``: there is no extrapolation.
    """
    frontier: list[RDPoint] = []
    for point in sorted(points, key=lambda p: (p.bpp, -p.psnr)):
        if np.isfinite(point.psnr) and (not frontier or point.psnr > frontier[-1].psnr):
            frontier.append(point)
    if len(frontier) < 2:
        raise ValueError(f"need at least two RD points with distinct PSNR, got {len(frontier)}")
    low, high = frontier[0].psnr, frontier[-1].psnr
    if not low <= target_psnr <= high:
        raise ValueError(f"target PSNR {target_psnr:.2f} dB is outside the curve's range [{low:.2f}, {high:.2f}] dB")
    log_bpp = PchipInterpolator([p.psnr for p in frontier], np.log([p.bpp for p in frontier]))
    return float(np.exp(log_bpp(target_psnr)))

"""What ``parahydra demo`` and ``bench/pipeline.py`` make of a pipeline run: numbers, table, images.

ROS-free. Per camera, over the frames whose reconstruction came back:

* ``bpp``: every byte of the ``CompressedLatent`` messages on the wire (serialized CDR:
  header, fields and payload) × 8 over the pixels; ``payload_bpp`` counts the coded view
  alone (the ParaHydra container, its header included);
* ``ratio_raw``: bytes of the camera's serialized ``sensor_msgs/Image`` over the latent's;
* ``ratio_jpeg``: the bytes JPEG (``eval.anchors.ANCHORS['jpeg']``, 4:2:0, as
  ``compressed_image_transport`` writes it) needs for the PSNR the reconstructions reached on
  the same source images (``eval.rd.bpp_at_psnr`` over a quality sweep: mean PSNR against
  pixel-weighted bpp, as every RD point of ``eval``) over the ParaHydra payload's bytes;
  ``None`` when that PSNR is outside JPEG's range (below its lowest quality, say);
* ``psnr`` and ``ms_ssim`` of the reconstructions against the camera's images (``codec.metrics``);
* ``encode_ms``: the encoder's own time per frame (``CompressedLatent.encode_time_ms``);
  ``decoder_ms``: latent received → reconstruction received (time-sync wait, queue, joint
  decode of the group, transport); ``latency_ms``: capture stamp → reconstruction received;
  each as p50 and p95.

The camera replay publishes every view as ``rgb8`` (a mono view of a bag or folder is
replicated to three channels), so ``ratio_raw`` is against 24 bits per pixel.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..codec.image_conversions import as_rgb
from ..codec.metrics import ms_ssim, psnr
from ..eval.rd import RDPoint, bpp_at_psnr

#: JPEG qualities of the equal-PSNR sweep (dense enough for the interpolation, quick).
JPEG_QUALITIES = (1, 3, 6, 10, 15, 25, 40, 60, 75, 85, 92, 97)
#: Columns of the printed table: key, title, format.
COLUMNS = (
    ("camera", "camera", "s"), ("frames", "frames", "d"), ("bpp", "bpp", ".4f"),
    ("ratio_raw", "x raw", ".1f"), ("ratio_jpeg", "x JPEG", ".2f"), ("psnr", "PSNR dB", ".2f"),
    ("ms_ssim", "MS-SSIM", ".4f"), ("encode_ms", "encode ms p50/p95", "pair"),
    ("decoder_ms", "decoder ms p50/p95", "pair"), ("latency_ms", "capture->image ms p50/p95", "pair"),
)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """``p50`` and ``p95`` of the finite values (NaN when there are none)."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return {"p50": math.nan, "p95": math.nan}
    p50, p95 = np.percentile(finite, (50, 95))
    return {"p50": float(p50), "p95": float(p95)}


def jpeg_points(images: Sequence[np.ndarray], qualities: Sequence[int] = JPEG_QUALITIES) -> list[RDPoint]:
    """JPEG RD points of ``images`` (PSNR only: the equal-PSNR rate needs no MS-SSIM)."""
    from ..eval.anchors import ANCHORS

    anchor = ANCHORS["jpeg"]
    rgb = [as_rgb(image) for image in images]
    pixels = sum(image.shape[0] * image.shape[1] for image in rgb)
    points = []
    for quality in qualities:
        coded = [anchor.encode_decode(image, quality) for image in rgb]
        points.append(RDPoint(quality=quality, bpp=8.0 * sum(c.num_bytes for c in coded) / pixels,
                              psnr=float(np.mean([psnr(i, c.decoded) for i, c in zip(rgb, coded)])),
                              ms_ssim=math.nan))
    return points


def camera_summary(camera: str, frames: Sequence[Any], jpeg: bool = True) -> dict[str, Any]:
    """The numbers of one camera (or of all, ``frames`` of every camera) from ``demo.pipeline.Frame``s;
    ``jpeg``: also the JPEG sweep and the ratio at equal PSNR."""
    done = [f for f in frames if f.complete]
    row: dict[str, Any] = {"camera": camera, "frames": len(done), "frames_sent": len(frames)}
    if not done:
        return row
    pixels = sum(f.original.shape[0] * f.original.shape[1] for f in done)
    latent, payload, raw = (sum(getattr(f, key) for f in done) for key in ("latent_bytes", "payload_bytes",
                                                                              "image_bytes"))
    scores = [(psnr(f.original, f.reconstruction), ms_ssim(f.original, f.reconstruction)) for f in done]
    row.update(
        bpp=8.0 * latent / pixels, payload_bpp=8.0 * payload / pixels, ratio_raw=raw / latent,
        latent_bytes_per_frame=latent / len(done), payload_bytes_per_frame=payload / len(done),
        raw_bytes_per_frame=raw / len(done),
        psnr=float(np.mean([s[0] for s in scores])), ms_ssim=float(np.mean([s[1] for s in scores])),
        encode_ms=percentiles([f.encode_ms for f in done]),
        decoder_ms=percentiles([f.decoder_ms for f in done]),
        latency_ms=percentiles([f.latency_ms for f in done]),
    )
    if not jpeg:
        return row
    curve = jpeg_points([f.original for f in done])
    row["jpeg_curve"] = [vars(p) for p in curve]
    try:
        jpeg_bpp = bpp_at_psnr(curve, row["psnr"])
    except ValueError as error:
        row.update(jpeg_bpp=None, jpeg_bytes_per_frame=None, ratio_jpeg=None, jpeg_note=str(error))
    else:
        jpeg_bytes = jpeg_bpp * pixels / 8.0
        row.update(jpeg_bpp=jpeg_bpp, jpeg_bytes_per_frame=jpeg_bytes / len(done), ratio_jpeg=jpeg_bytes / payload)
    return row


def summarize(results: Any) -> list[dict[str, Any]]:
    """One row per camera, then ``all`` (every camera's frames together)."""
    rows = [camera_summary(camera, results.frames[camera]) for camera in results.spec.cameras]
    if len(rows) > 1:
        every = camera_summary("all", [f for camera in results.spec.cameras for f in results.frames[camera]],
                               jpeg=False)
        if every["frames"] and all(row.get("ratio_jpeg") is not None for row in rows):
            # each camera's JPEG at that camera's PSNR, added up
            jpeg_bytes = sum(row["jpeg_bytes_per_frame"] * row["frames"] for row in rows)
            payload = sum(row["payload_bytes_per_frame"] * row["frames"] for row in rows)
            every.update(jpeg_bytes_per_frame=jpeg_bytes / every["frames"], ratio_jpeg=jpeg_bytes / payload)
        rows.append(every)
    return rows


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]] = COLUMNS) -> str:
    """Rows as an aligned text table (``-`` where a value is missing)."""
    def cell(value: Any, fmt: str) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        if fmt == "pair":
            return "/".join("-" if not math.isfinite(value[k]) else f"{value[k]:.0f}" for k in ("p50", "p95"))
        return format(value, fmt)

    cells = [[title for _, title, _ in columns]]
    cells += [[cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- images ----------------------------------------------------------------------------------------
def error_map(original: np.ndarray, reconstruction: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|original − reconstruction| (mean over channels) × ``gain``, as an RGB heat map."""
    diff = np.abs(original.astype(np.int16) - reconstruction.astype(np.int16))
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    heat = cv2.applyColorMap(np.clip(diff * gain, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)


def side_by_side(frames: Sequence[Any], path: Path) -> tuple[int, int]:
    """One row per camera: original | reconstruction | error map ×4, labelled; written as PNG.
    Returns the image's (height, width): (cameras × H, 3 × W) for views of one size H × W."""
    rows = []
    for frame in frames:
        original = as_rgb(frame.original)
        reconstruction = as_rgb(frame.reconstruction)
        value = psnr(frame.original, frame.reconstruction)
        panels = [(original, f"{frame.camera} original"),
                  (reconstruction, f"{frame.camera} ParaHydra {value:.2f} dB"),
                  (error_map(frame.original, frame.reconstruction), "|error| x4")]
        rows.append(np.concatenate([_label(image, text) for image, text in panels], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    canvas = np.concatenate(rows, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the image")
    return canvas.shape[0], canvas.shape[1]


def _label(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` in its top-left corner (white on a dark band)."""
    out = image.copy()
    scale = max(0.35, min(0.8, image.shape[1] / 800))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (min(w + 8, out.shape[1] - 1), h + base + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (4, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


# -- the RD plot -----------------------------------------------------------------------------------
def rd_curves(codec: Any, groups: Sequence[Sequence[np.ndarray]], qualities: Sequence[int],
              pipeline_point: RDPoint | None, label: str) -> dict[str, list[RDPoint]]:
    """ParaHydra (joint and separate decoding, ``eval.model_rd``) and JPEG (its default sweep,
    ``eval.rd``) on ``groups``, plus the point the pipeline measured (``label``)."""
    from ..eval.anchors import ANCHORS
    from ..eval.model_rd import model_rd_points
    from ..eval.rd import anchor_rd_points

    curves = {f"parahydra-{mode}": points for mode, points in model_rd_points(codec, groups, qualities).items()}
    curves["jpeg"] = anchor_rd_points([as_rgb(image) for group in groups for image in group], ANCHORS["jpeg"])
    if pipeline_point is not None:
        curves[label] = [pipeline_point]
    return curves


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as sorted JSON, NaN and infinities written as ``null``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(payload), indent=2, sort_keys=True) + "\n")


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``, paths and numpy scalars as plain values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value

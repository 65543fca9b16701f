"""``sensor_msgs/Image`` and ``CompressedImage`` contents ↔ the codec's uint8 pixels.

ROS-free (numpy and OpenCV only): the functions take a message's fields, or any
object with the message's attributes (an rclpy or a rosbags message), and return
plain values. The nodes, the bag tool and the demo all convert here; ``as_rgb`` is
the package's one mono → RGB expansion.

The codec codes 8-bit RGB (H×W×3) or mono (H×W) pixels. Supported ``Image``
encodings, and how they are coded and restored:

=========  ==========================  =========================================
encoding   coded as                    restored as
=========  ==========================  =========================================
rgb8       RGB                         rgb8
bgr8       RGB (channels swapped)      bgr8
rgba8      RGB (alpha not coded)       rgba8 with alpha 255
bgra8      RGB (alpha not coded)       bgra8 with alpha 255
mono8      mono                        mono8
=========  ==========================  =========================================

Everything else (16-bit, float, Bayer, YUV 4:2:2, …) raises ``UnsupportedEncoding``:
convert it first (``image_proc`` debayers, ``cv_bridge`` converts). Row padding
(``step`` larger than a row) is accepted on input; output rows are packed.

``CompressedImage`` (JPEG, PNG, …) is decoded with ``cv2.imdecode`` into RGB (or
mono for a gray image) and restored as ``rgb8`` (or ``mono8``): a decoder cannot
re-create the camera's JPEG bytes, only the pixels.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

#: Image encoding → channels in the message.
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
SUPPORTED_ENCODINGS = tuple(CHANNELS)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An H×W (or H×W×1) mono image replicated to H×W×3; any other array unchanged."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


class UnsupportedEncoding(ValueError):
    """An image encoding the codec cannot code (the message says which and what to do)."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        super().__init__(
            f"image encoding {encoding!r} is not supported (supported: {', '.join(SUPPORTED_ENCODINGS)}); "
            "publish or convert the camera's images to one of these (e.g. image_proc for Bayer)")


class MalformedImage(ValueError):
    """An image message whose fields contradict each other (size, step, data length)."""


def image_to_pixels(encoding: str, height: int, width: int, step: int, data: Any) -> np.ndarray:
    """Pixels of an ``Image`` message's fields: uint8 RGB H×W×3, or H×W for mono8 (a copy)."""
    if encoding not in CHANNELS:
        raise UnsupportedEncoding(encoding)
    channels = CHANNELS[encoding]
    if height <= 0 or width <= 0:
        raise MalformedImage(f"empty {encoding} image ({width}x{height})")
    row = width * channels
    if step < row:
        raise MalformedImage(f"step {step} is smaller than a {width}-pixel {encoding} row ({row} bytes)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    needed = step * (height - 1) + row
    if buffer.size < needed:
        raise MalformedImage(f"{encoding} image {width}x{height} (step {step}) needs {needed} bytes, "
                             f"data has {buffer.size}")
    if buffer.size < step * height:  # last row unpadded
        buffer = np.concatenate([buffer, np.zeros(step * height - buffer.size, np.uint8)])
    rows = buffer[: step * height].reshape(height, step)[:, :row]
    if channels == 1:
        return rows.copy()
    pixels = rows.reshape(height, width, channels)
    if encoding == "rgb8":
        return pixels.copy()
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[:, :, :3])
    return np.ascontiguousarray(pixels[:, :, 2::-1])  # bgra8: B, G, R → R, G, B


def msg_to_pixels(msg: Any) -> np.ndarray:
    """``image_to_pixels`` of a ``sensor_msgs/Image`` (or anything with its fields)."""
    return image_to_pixels(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def pixels_to_image(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """The ``Image`` fields (height, width, encoding, is_bigendian, step, data as bytes) for ``pixels``.

    ``pixels`` is uint8 RGB H×W×3 or mono H×W; it is converted to ``encoding``
    (mono to colour by replication, colour to mono with OpenCV's luma weights,
    alpha set to 255).
    """
    if encoding not in CHANNELS:
        raise UnsupportedEncoding(encoding)
    if pixels.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"expected H×W×3 RGB or H×W mono pixels, got shape {pixels.shape}")
    height, width = pixels.shape[:2]
    channels = CHANNELS[encoding]
    if channels == 1:
        out = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    else:
        rgb = as_rgb(pixels)
        if encoding.startswith("bgr"):
            rgb = rgb[:, :, ::-1]
        if channels == 4:
            rgb = np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)
        out = rgb
    return {
        "height": height, "width": width, "encoding": encoding, "is_bigendian": 0,
        "step": width * channels, "data": np.ascontiguousarray(out).tobytes(),
    }


def compressed_to_pixels(format: str, data: Any) -> tuple[np.ndarray, str]:
    """Decode a ``CompressedImage`` (``format`` as in the message) to pixels and the encoding to restore.

    Returns (RGB H×W×3, ``"rgb8"``) or (H×W, ``"mono8"``). 16-bit images raise
    ``UnsupportedEncoding``; bytes OpenCV cannot decode raise ``MalformedImage``.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if image is None:
        raise MalformedImage(f"compressed image ({format or 'no format'}, {buffer.size} bytes) "
                             "could not be decoded")
    if image.dtype != np.uint8:
        raise UnsupportedEncoding(f"{format or 'compressed'} with {image.dtype} pixels")
    if image.ndim == 2:
        return image, "mono8"
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB), "rgb8"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), "rgb8"


def compressed_format_key(format: str) -> str:
    """A short key for a ``CompressedImage.format`` (``"rgb8; jpeg compressed bgr8"`` → ``"jpeg"``), for logs."""
    text = format.lower()
    for name in ("jpeg", "jpg", "png", "tiff", "webp", "bmp"):
        if name in text:
            return "jpeg" if name == "jpg" else name
    return text or "unknown"


def crop_and_resize(pixels: np.ndarray, roi: tuple[int, int, int, int] = (0, 0, 0, 0),
                    size: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Crop to ``roi`` = (x, y, width, height) then resize to ``size`` = (width, height).

    A zero roi width/height extends to the image's edge; a zero size keeps that side
    (or, when the other side is set, keeps the aspect ratio). A roi outside the
    image raises ``ValueError``.
    """
    x, y, w, h = roi
    height, width = pixels.shape[:2]
    if (x, y, w, h) != (0, 0, 0, 0):
        w = w or width - x
        h = h or height - y
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
            raise ValueError(f"region of interest x={x} y={y} {roi[2]}x{roi[3]} is outside "
                             f"the {width}x{height} image")
        pixels = pixels[y : y + h, x : x + w]
        height, width = h, w
    out_w, out_h = size
    if out_w < 0 or out_h < 0:
        raise ValueError(f"resize size {out_w}x{out_h} must not be negative")
    if out_w or out_h:
        out_w = out_w or max(1, round(width * out_h / height))
        out_h = out_h or max(1, round(height * out_w / width))
        if (out_w, out_h) != (width, height):
            shrinking = out_w * out_h < width * height
            pixels = cv2.resize(pixels, (out_w, out_h),
                                interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.ascontiguousarray(pixels)

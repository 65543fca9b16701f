"""Planar YCbCr frames for the video-codec anchors: the one RGB <-> YCbCr conversion.

Colour follows BT.709 with full-range quantisation (ITU-T H.273): for bit depth
``n``, ``Y = round((2**n - 1) * E'Y)`` and ``C = round((2**n - 1) * E'C + 2**(n-1))``.
4:2:0 chroma is the 2x2 mean of 4:4:4 chroma (centred samples) and is brought
back with bilinear interpolation; 4:2:0 frames are padded to even sizes by edge
replication, and callers crop the decoded RGB back. Frames travel to and from
the codec tools as raw planar samples (Y, Cb, Cr back to back; little-endian
16-bit above 8 bits): x265 3.5 misreads YUV4MPEG2 headers of some sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Chroma = Literal["444", "420"]

_KR, _KB = 0.2126, 0.0722
_RGB_TO_YCBCR = np.array(
    [
        [_KR, 1.0 - _KR - _KB, _KB],
        [-_KR / (2 * (1 - _KB)), -(1 - _KR - _KB) / (2 * (1 - _KB)), 0.5],
        [0.5, -(1 - _KR - _KB) / (2 * (1 - _KR)), -_KB / (2 * (1 - _KR))],
    ]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


@dataclass(frozen=True)
class YuvFormat:
    """Sample bit depth and chroma subsampling of a planar YCbCr frame."""

    bit_depth: int
    chroma: Chroma

    @property
    def dtype(self) -> type[np.integer]:
        """Sample type of the planes (``uint8`` up to 8 bits, else ``uint16``)."""
        return np.uint8 if self.bit_depth <= 8 else np.uint16

    def luma_size(self, height: int, width: int) -> tuple[int, int]:
        """Coded luma size for a picture of ``height x width`` (even for 4:2:0)."""
        step = 2 if self.chroma == "420" else 1
        return -(-height // step) * step, -(-width // step) * step

    def chroma_size(self, height: int, width: int) -> tuple[int, int]:
        """Chroma plane size for a coded luma size ``height x width``."""
        return (height // 2, width // 2) if self.chroma == "420" else (height, width)


@dataclass(frozen=True)
class YuvFrame:
    """Three planes ``(Y, Cb, Cr)`` of one picture in a given format."""

    planes: tuple[np.ndarray, np.ndarray, np.ndarray]
    fmt: YuvFormat

    @property
    def height(self) -> int:
        """Coded luma height."""
        return self.planes[0].shape[0]

    @property
    def width(self) -> int:
        """Coded luma width."""
        return self.planes[0].shape[1]

    def to_raw(self) -> bytes:
        """The planes back to back, little-endian."""
        return b"".join(plane.astype(plane.dtype.newbyteorder("<")).tobytes() for plane in self.planes)

    @classmethod
    def from_raw(cls, data: bytes, height: int, width: int, fmt: YuvFormat) -> YuvFrame:
        """Parse raw planar samples of a coded ``height x width`` frame."""
        dtype = np.dtype(fmt.dtype).newbyteorder("<")
        sizes = [(height, width), *[fmt.chroma_size(height, width)] * 2]
        expected = sum(h * w for h, w in sizes) * dtype.itemsize
        if len(data) != expected:
            raise ValueError(f"raw {fmt} frame of {width}x{height} needs {expected} bytes, got {len(data)}")
        samples = np.frombuffer(data, dtype=dtype).astype(fmt.dtype)
        planes, start = [], 0
        for h, w in sizes:
            planes.append(samples[start : start + h * w].reshape(h, w))
            start += h * w
        return cls((planes[0], planes[1], planes[2]), fmt)


def rgb_to_yuv(image: np.ndarray, fmt: YuvFormat) -> YuvFrame:
    """Convert an ``HxWx3`` ``uint8`` RGB image (padded to the coded size) to a frame."""
    height, width = fmt.luma_size(*image.shape[:2])
    padded = np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)), mode="edge")
    ycbcr = (padded.astype(np.float32) / 255.0) @ _RGB_TO_YCBCR.T.astype(np.float32)
    peak, mid = 2**fmt.bit_depth - 1, 2 ** (fmt.bit_depth - 1)
    planes = []
    for index, offset in enumerate((0, mid, mid)):
        plane = ycbcr[..., index]
        if index and fmt.chroma == "420":
            plane = cv2.resize(plane, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        planes.append(np.clip(np.rint(plane * peak + offset), 0, peak).astype(fmt.dtype))
    return YuvFrame((planes[0], planes[1], planes[2]), fmt)


def yuv_to_rgb(frame: YuvFrame) -> np.ndarray:
    """Convert a frame back to an ``HxWx3`` ``uint8`` RGB image of its coded size."""
    peak, mid = 2**frame.fmt.bit_depth - 1, 2 ** (frame.fmt.bit_depth - 1)
    size = (frame.width, frame.height)
    channels = []
    for index, offset in enumerate((0, mid, mid)):
        plane = (frame.planes[index].astype(np.float32) - offset) / peak
        if plane.shape[::-1] != size:
            plane = cv2.resize(plane, size, interpolation=cv2.INTER_LINEAR)
        channels.append(plane)
    rgb = np.stack(channels, axis=-1) @ _YCBCR_TO_RGB.T.astype(np.float32)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)

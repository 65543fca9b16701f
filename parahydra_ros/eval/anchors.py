"""Classical image codecs to compare the learned codec with (the "anchors").

Every anchor has one job: ``encode_decode(image, quality)`` codes an ``HxWx3``
``uint8`` RGB image and returns the size in bytes of the whole file the codec
wrote and the decoded ``uint8`` RGB image. ``qualities`` is the default sweep,
ordered from the lowest to the highest rate (about 0.1 to 2 bpp on photographs);
``quality`` is the codec's own knob (0-100 for the still-image formats, a QP or
cq-level, lower is better, for the video codecs). ``available()`` says whether
the tools are present, and why not, so an evaluation can list what is missing.

Settings are the PSNR-fair ones (no perceptual tuning); the video codecs code one
intra frame converted to BT.709 full-range YCbCr in :mod:`parahydra_ros.eval.yuv`:

========  ==========================================================================
``jpeg``  Pillow (libjpeg-turbo), 4:2:0; byte-identical to OpenCV's ``imencode``
          that ROS ``compressed_image_transport`` uses
``webp``  Pillow, ``method=6``
``avif``  Pillow >= 12, ``speed=6``, 4:4:4
``hevc``  x265 CLI, 8-bit 4:4:4, ``--preset slower --tune psnr --qp Q --keyint 1
          --no-info``; raw HEVC stream decoded by ffmpeg (imageio-ffmpeg's build)
``av1``   aomenc ``--allintra --end-usage=q --cq-level=Q --cpu-used=2``, 8-bit
          4:4:4 (``--profile=1``), raw OBU stream; decoded by aomdec
``vvc``   libvvenc in imageio-ffmpeg's ffmpeg, ``-preset medium -qpa 0 -qp Q``,
          10-bit 4:2:0 (the only input it takes, which caps PSNR near 43-45 dB on
          photographs); raw VVC stream decoded by ffmpeg's native VVC decoder
========  ==========================================================================

x265 and aom-tools are Debian packages (``scripts/setup_eval_tools.sh``).
"""
from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, features

from parahydra_ros.eval.yuv import YuvFormat, YuvFrame, rgb_to_yuv, yuv_to_rgb


class AnchorError(RuntimeError):
    """An anchor's tool is missing or failed on an image."""


@dataclass(frozen=True)
class Availability:
    """Whether an anchor can run here; ``reason`` says why not. Truthy when it can."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class Coded(NamedTuple):
    """Result of coding one image: file size in bytes and the decoded RGB image."""

    num_bytes: int
    decoded: np.ndarray


class Anchor(ABC):
    """A classical codec coding RGB images at a quality setting."""

    name: str
    qualities: tuple[int, ...]

    def available(self) -> Availability:
        """Whether the codec can run on this machine."""
        return Availability(True)

    def encode_decode(self, image: np.ndarray, quality: int) -> Coded:
        """Code ``image`` (``HxWx3`` ``uint8`` RGB) at ``quality``; see the module docstring."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{self.name}: expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        availability = self.available()
        if not availability:
            raise AnchorError(f"{self.name} is not available: {availability.reason}")
        return self._encode_decode(image, quality)

    @abstractmethod
    def _encode_decode(self, image: np.ndarray, quality: int) -> Coded:
        """Code a validated image with tools known to be present."""


class PillowAnchor(Anchor):
    """A still-image format written and read by Pillow in memory."""

    def __init__(self, name: str, pil_format: str, feature: str, qualities: tuple[int, ...], **options: object):
        self.name, self.qualities = name, qualities
        self._format, self._feature, self._options = pil_format, feature, options

    def available(self) -> Availability:
        if features.check(self._feature):
            return Availability(True)
        return Availability(False, f"this Pillow build has no {self._feature} support")

    def _encode_decode(self, image: np.ndarray, quality: int) -> Coded:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=self._format, quality=quality, **self._options)
        with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
            return Coded(buffer.getbuffer().nbytes, np.asarray(decoded.convert("RGB")))


class CommandLineAnchor(Anchor):
    """A video codec run as external encoder and decoder on one YCbCr frame.

    Subclasses give the frame format and the two command lines; this class
    converts colour (in :mod:`parahydra_ros.eval.yuv`), runs the tools in a
    temporary directory, counts the bytes of the coded file and converts back.
    """

    fmt: YuvFormat
    suffix: str

    def _encode_decode(self, image: np.ndarray, quality: int) -> Coded:
        frame = rgb_to_yuv(image, self.fmt)
        with tempfile.TemporaryDirectory(prefix=f"parahydra-{self.name}-") as tmp:
            source, coded, decoded = Path(tmp, "source.yuv"), Path(tmp, f"coded{self.suffix}"), Path(tmp, "decoded.yuv")
            source.write_bytes(frame.to_raw())
            self._run(self.encode_command(source, (frame.height, frame.width), coded, quality))
            self._run(self.decode_command(coded, decoded))
            decoded_frame = YuvFrame.from_raw(decoded.read_bytes(), frame.height, frame.width, self.fmt)
            rgb = yuv_to_rgb(decoded_frame)[: image.shape[0], : image.shape[1]]
            return Coded(coded.stat().st_size, np.ascontiguousarray(rgb))

    @abstractmethod
    def encode_command(self, source: Path, size: tuple[int, int], coded: Path, quality: int) -> list[str]:
        """Command line coding the raw planar frame ``source`` of ``size`` (height, width) into ``coded``."""

    @abstractmethod
    def decode_command(self, coded: Path, decoded: Path) -> list[str]:
        """Command line decoding ``coded`` into raw planar samples ``decoded``."""

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AnchorError(
                f"{self.name}: {Path(command[0]).name} exited with {result.returncode}: "
                f"{result.stderr.strip()[-2000:]}\ncommand: {' '.join(command)}"
            )


class X265Anchor(CommandLineAnchor):
    """HEVC intra (x265 CLI, 8-bit 4:4:4); ``quality`` is the QP."""

    name = "hevc"
    qualities = (47, 42, 37, 32, 27, 22)
    fmt = YuvFormat(8, "444")
    suffix = ".hevc"

    def __init__(self, preset: str = "slower"):
        self.preset = preset

    def available(self) -> Availability:
        return _first_missing(_executable("x265"), _ffmpeg_with("decoders", "hevc"))

    def encode_command(self, source: Path, size: tuple[int, int], coded: Path, quality: int) -> list[str]:
        return [
            "x265", "--input", str(source), "--input-res", f"{size[1]}x{size[0]}", "--input-csp", "i444",
            "--fps", "1", "--output", str(coded), "--frames", "1", "--keyint", "1",
            "--preset", self.preset, "--tune", "psnr", "--qp", str(quality), "--no-info", "--log-level", "error",
        ]  # fmt: skip

    def decode_command(self, coded: Path, decoded: Path) -> list[str]:
        return _ffmpeg_decode("hevc", coded, "yuv444p", decoded)


class AomencAnchor(CommandLineAnchor):
    """AV1 intra (aomenc/aomdec, 8-bit 4:4:4); ``quality`` is the cq-level (0-63)."""

    name = "av1"
    qualities = (58, 50, 42, 34, 26, 18, 10)
    fmt = YuvFormat(8, "444")
    suffix = ".obu"

    def __init__(self, cpu_used: int = 2):
        self.cpu_used = cpu_used

    def available(self) -> Availability:
        return _first_missing(_executable("aomenc"), _executable("aomdec"))

    def encode_command(self, source: Path, size: tuple[int, int], coded: Path, quality: int) -> list[str]:
        return [
            "aomenc", "--i444", f"--height={size[0]}", f"--width={size[1]}", "--input-bit-depth=8",
            "--allintra", "--end-usage=q", f"--cq-level={quality}", "--profile=1", f"--cpu-used={self.cpu_used}",
            "--limit=1", "--obu", "--quiet", "-o", str(coded), str(source),
        ]  # fmt: skip

    def decode_command(self, coded: Path, decoded: Path) -> list[str]:
        return ["aomdec", "--rawvideo", "--output-bit-depth=8", "-o", str(decoded), str(coded)]


class VvencAnchor(CommandLineAnchor):
    """VVC intra (libvvenc in imageio-ffmpeg's ffmpeg, 10-bit 4:2:0); ``quality`` is the QP."""

    name = "vvc"
    qualities = (47, 42, 37, 32, 27, 22)
    fmt = YuvFormat(10, "420")
    suffix = ".266"

    def __init__(self, preset: str = "medium"):
        self.preset = preset

    def available(self) -> Availability:
        return _first_missing(_ffmpeg_with("encoders", "libvvenc"), _ffmpeg_with("decoders", "vvc"))

    def encode_command(self, source: Path, size: tuple[int, int], coded: Path, quality: int) -> list[str]:
        return [
            _ffmpeg(), "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p10le",
            "-video_size", f"{size[1]}x{size[0]}", "-framerate", "1", "-i", str(source), "-frames:v", "1",
            "-c:v", "libvvenc", "-preset", self.preset, "-qpa", "0", "-qp", str(quality), "-f", "vvc", str(coded),
        ]  # fmt: skip

    def decode_command(self, coded: Path, decoded: Path) -> list[str]:
        return _ffmpeg_decode("vvc", coded, "yuv420p10le", decoded)


def _ffmpeg_decode(demuxer: str, coded: Path, pix_fmt: str, decoded: Path) -> list[str]:
    """ffmpeg command decoding a raw elementary stream to raw planes of ``pix_fmt``."""
    return [
        _ffmpeg(), "-nostdin", "-v", "error", "-f", demuxer, "-i", str(coded),
        "-f", "rawvideo", "-pix_fmt", pix_fmt, "-y", str(decoded),
    ]  # fmt: skip


def _ffmpeg() -> str:
    """Path of imageio-ffmpeg's static ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.cache
def _ffmpeg_with(kind: str, codec: str) -> Availability:
    """Whether imageio-ffmpeg's ffmpeg lists ``codec`` among its ``kind`` (encoders/decoders)."""
    try:
        exe = _ffmpeg()
        listing = subprocess.run([exe, "-hide_banner", f"-{kind}"], capture_output=True, text=True, check=True)
    except (ImportError, RuntimeError, OSError, subprocess.CalledProcessError) as error:
        return Availability(False, f"no usable ffmpeg from imageio-ffmpeg: {error}")
    names = {line.split()[1] for line in listing.stdout.splitlines() if line.startswith(" ") and len(line.split()) > 1}
    if codec in names:
        return Availability(True)
    return Availability(False, f"{exe} has no {codec} among its {kind}")


def _executable(name: str) -> Availability:
    if shutil.which(name):
        return Availability(True)
    return Availability(False, f"{name} is not on PATH (scripts/setup_eval_tools.sh installs it)")


def _first_missing(*checks: Availability) -> Availability:
    return next((check for check in checks if not check), Availability(True))


ANCHORS: dict[str, Anchor] = {
    anchor.name: anchor
    for anchor in (
        PillowAnchor("jpeg", "JPEG", "jpg", qualities=(5, 15, 35, 60, 80, 90), subsampling="4:2:0"),
        PillowAnchor("webp", "WEBP", "webp", qualities=(2, 15, 40, 70, 85, 95), method=6),
        PillowAnchor("avif", "AVIF", "avif", qualities=(10, 30, 50, 65, 80, 88), speed=6, subsampling="4:4:4"),
        X265Anchor(),
        AomencAnchor(),
        VvencAnchor(),
    )
}
"""Every anchor by name, in the order reports list them."""

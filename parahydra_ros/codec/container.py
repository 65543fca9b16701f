"""The container of one coded view: bytes ↔ header + entropy-coded strings.

Layout, format version 2 (integers little-endian)::

    offset size  field
    0      4     magic b"PHYD"
    4      1     format version (2)
    5      1     flags: bit 0 = single-channel (mono) source; bits 1-7 reserved, zero
    6      1     quality index
    7      1     length L of the model name (≤ 64)
    8      8     model hash (first 8 bytes of the SHA-256 of the weights' state)
    16     2     original height      18  2  original width
    20     1     padding rows (bottom) 21  1  padding columns (right)
    22     8     hash of the quantised latent symbols (desync check)
    30     4     length of the z string   34  4  length of the y string
    38     L     model name (UTF-8)
    38+L   …     z string, then y string
    end-4  4     CRC32 of everything before it

Each string is one ANS stream of :mod:`parahydra_ros.model.entropy_coder` (whole
32-bit words). Version 1 held CompressAI rANS strings, whose decoder reads past a
string's end when a header declares a larger image than was coded; version 2 decoders
read only the bytes they are given, and are the only ones this package writes or reads.

Every declared size is checked against the payload before anything is allocated,
and a payload that is too short, too long, corrupt, foreign or from another format
version raises a specific :class:`~parahydra_ros.codec.errors.PayloadError`. One
payload has one meaning: reserved flag bits must be zero, nothing may follow the CRC,
and the entropy decoder refuses a string with words left over after its symbols.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..model.configs import PAD_MULTIPLE
from .errors import CorruptPayload, NotAParaHydraPayload, TruncatedPayload, UnsupportedFormatVersion

MAGIC = b"PHYD"
FORMAT_VERSION = 2
MAX_SIDE = 16384
#: Default ``max_pixels`` of a decoder: the largest image it decodes (4096×4096), so a
#: forged header cannot make it do unbounded work (``codec.api.ParaHydraCodec``).
DEFAULT_MAX_PIXELS = 4096 * 4096
MAX_NAME = 64
_HEADER = struct.Struct("<4sBBBB8sHHBB8sII")
_CRC = struct.Struct("<I")
_FLAG_MONO = 1
_FLAGS_KNOWN = _FLAG_MONO


@dataclass(frozen=True)
class ViewHeader:
    """What a decoder needs to know about one coded view before decoding it."""

    model_name: str
    model_hash: str  # 16 hex digits
    quality: int
    height: int
    width: int
    pad_bottom: int
    pad_right: int
    mono: bool
    symbols_hash: str  # 16 hex digits

    @property
    def padded_hw(self) -> tuple[int, int]:
        return self.height + self.pad_bottom, self.width + self.pad_right


@dataclass(frozen=True)
class CodedView:
    """A parsed container: header and the two entropy-coded strings."""

    header: ViewHeader
    z: bytes
    y: bytes


def pack(view: CodedView) -> bytes:
    """Serialise one coded view (header checked against the format's limits)."""
    h = view.header
    name = h.model_name.encode()
    _check_header(h, len(name))
    head = _HEADER.pack(
        MAGIC, FORMAT_VERSION, _FLAG_MONO if h.mono else 0, h.quality, len(name),
        bytes.fromhex(h.model_hash), h.height, h.width, h.pad_bottom, h.pad_right,
        bytes.fromhex(h.symbols_hash), len(view.z), len(view.y),
    )
    body = head + name + view.z + view.y
    return body + _CRC.pack(zlib.crc32(body))


def unpack(payload: bytes) -> CodedView:
    """Parse and verify one coded view; raises a ``PayloadError`` naming what is wrong."""
    payload = bytes(payload)
    if len(payload) < len(MAGIC) or payload[:4] != MAGIC:
        raise NotAParaHydraPayload("not a ParaHydra payload (bad magic)")
    if len(payload) < 5:
        raise TruncatedPayload(f"payload of {len(payload)} bytes is truncated inside the header")
    if payload[4] != FORMAT_VERSION:
        hint = ("re-encode it: older versions' entropy coder is no longer read" if payload[4] < FORMAT_VERSION
                else "update parahydra_ros")
        raise UnsupportedFormatVersion(
            f"container format version {payload[4]} is not supported (this decoder reads "
            f"version {FORMAT_VERSION}); {hint}")
    if len(payload) < _HEADER.size + _CRC.size:
        raise TruncatedPayload(f"payload of {len(payload)} bytes is truncated inside the header")
    (_, _, flags, quality, name_len, model_hash, height, width, pad_bottom, pad_right,
     symbols_hash, z_len, y_len) = _HEADER.unpack_from(payload)
    expected = _HEADER.size + name_len + z_len + y_len + _CRC.size
    if len(payload) < expected:
        raise TruncatedPayload(f"payload is {len(payload)} bytes but its header declares {expected}")
    if len(payload) > expected:
        raise CorruptPayload(f"payload is {len(payload)} bytes but its header declares {expected}")
    (crc,) = _CRC.unpack_from(payload, expected - _CRC.size)
    if zlib.crc32(payload[: expected - _CRC.size]) != crc:
        raise CorruptPayload("CRC32 mismatch: the payload was corrupted in transit or storage")
    if flags & ~_FLAGS_KNOWN:
        raise CorruptPayload(f"reserved flag bits set (flags 0x{flags:02x}): written by another "
                             "format or forged")
    start = _HEADER.size
    try:
        name = payload[start : start + name_len].decode()
    except UnicodeDecodeError as error:
        raise CorruptPayload("model name is not UTF-8") from error
    header = ViewHeader(
        model_name=name, model_hash=model_hash.hex(), quality=quality, height=height,
        width=width, pad_bottom=pad_bottom, pad_right=pad_right, mono=bool(flags & _FLAG_MONO),
        symbols_hash=symbols_hash.hex(),
    )
    _check_header(header, name_len)
    z_start = start + name_len
    return CodedView(header, payload[z_start : z_start + z_len], payload[z_start + z_len : z_start + z_len + y_len])


def read_header(payload: bytes) -> ViewHeader:
    """The verified header of a payload (the whole payload is checked)."""
    return unpack(payload).header


def _check_header(h: ViewHeader, name_len: int) -> None:
    if not (0 < h.height <= MAX_SIDE and 0 < h.width <= MAX_SIDE):
        raise CorruptPayload(f"image size {h.height}x{h.width} outside 1..{MAX_SIDE}")
    if not (0 <= h.pad_bottom < PAD_MULTIPLE and 0 <= h.pad_right < PAD_MULTIPLE):
        raise CorruptPayload(f"padding {h.pad_bottom},{h.pad_right} outside 0..{PAD_MULTIPLE - 1}")
    if (h.height + h.pad_bottom) % PAD_MULTIPLE or (h.width + h.pad_right) % PAD_MULTIPLE:
        raise CorruptPayload("padded size is not a multiple of 64")
    if not 0 < name_len <= MAX_NAME:
        raise CorruptPayload(f"model name length {name_len} outside 1..{MAX_NAME}")
    if not 0 <= h.quality < 256:
        raise CorruptPayload(f"quality {h.quality} outside 0..255")
    for label, value in (("model hash", h.model_hash), ("symbols hash", h.symbols_hash)):
        if len(value) != 16:
            raise CorruptPayload(f"{label} must be 16 hex digits")

"""The container of one coded view: round trip and every kind of bad payload."""
import struct
import zlib

import pytest

from parahydra_ros.codec import container
from parahydra_ros.codec.container import CodedView, ViewHeader
from parahydra_ros.codec.errors import (
    CorruptPayload,
    NotAParaHydraPayload,
    PayloadError,
    TruncatedPayload,
    UnsupportedFormatVersion,
)

HEADER = ViewHeader(
    model_name="parahydra-small", model_hash="0123456789abcdef", quality=3, height=480,
    width=630, pad_bottom=32, pad_right=10, mono=False, symbols_hash="fedcba9876543210",
)


def _payload() -> bytes:
    return container.pack(CodedView(HEADER, z=b"\x01\x02\x03" * 5, y=bytes(range(200))))


def test_round_trip_keeps_every_field():
    view = container.unpack(_payload())
    assert view.header == HEADER
    assert view.z == b"\x01\x02\x03" * 5 and view.y == bytes(range(200))
    assert view.header.padded_hw == (512, 640)


def test_layout_is_pinned():
    # The header is 38 bytes + name + strings + CRC: a change of layout must be deliberate.
    payload = _payload()
    assert len(payload) == 38 + len("parahydra-small") + 15 + 200 + 4
    assert payload[:5] == b"PHYD\x02"


@pytest.mark.parametrize("cut", [1, 4, 5, 20, 40, 60, 100, 270])
def test_truncated_payload_is_refused(cut):
    payload = _payload()
    with pytest.raises((TruncatedPayload, NotAParaHydraPayload)):
        container.unpack(payload[:cut])


def test_every_single_byte_flip_is_detected():
    payload = bytearray(_payload())
    for index in range(len(payload)):
        corrupted = bytearray(payload)
        corrupted[index] ^= 0x40
        with pytest.raises(PayloadError):
            container.unpack(bytes(corrupted))


def test_foreign_bytes_are_refused():
    png_signature = b"\x89PNG\r\n\x1a\n" + bytes(100)
    with pytest.raises(NotAParaHydraPayload):
        container.unpack(png_signature)
    with pytest.raises(NotAParaHydraPayload):
        container.unpack(b"")


def test_newer_format_is_refused_with_a_clear_message():
    payload = bytearray(_payload())
    payload[4] = 3
    with pytest.raises(UnsupportedFormatVersion, match="version 3.*update parahydra_ros"):
        container.unpack(bytes(payload))


def test_version_1_is_refused_with_a_clear_message():
    # Version 1 held CompressAI rANS strings, whose decoder reads past a string's end.
    payload = bytearray(_payload())
    payload[4] = 1
    with pytest.raises(UnsupportedFormatVersion, match="version 1.*re-encode"):
        container.unpack(bytes(payload))


def _with_crc(payload: bytearray) -> bytes:
    payload[-4:] = struct.pack("<I", zlib.crc32(bytes(payload[:-4])))
    return bytes(payload)


@pytest.mark.parametrize("bit", range(1, 8))
def test_reserved_flag_bits_are_refused_even_with_a_valid_crc(bit):
    # One payload, one meaning: a reader must not ignore bits a later format may give a meaning.
    payload = bytearray(_payload())
    payload[5] |= 1 << bit
    with pytest.raises(CorruptPayload, match="reserved flag bits"):
        container.unpack(_with_crc(payload))
    payload[5] = 1  # the mono bit alone is fine
    assert container.unpack(_with_crc(payload)).header.mono


def test_trailing_garbage_is_refused():
    with pytest.raises(CorruptPayload):
        container.unpack(_payload() + b"\x00")


@pytest.mark.parametrize("extra", [b"\x00", b"\x00" * 4, b"garbage!"])
def test_bytes_after_the_last_string_are_refused_even_with_a_valid_crc(extra):
    # Appended after the CRC, or inside the body with the CRC recomputed over them: the
    # header's string lengths no longer account for every byte.
    payload = _payload()
    body = payload[:-4] + extra
    with pytest.raises(CorruptPayload, match="declares"):
        container.unpack(body + struct.pack("<I", zlib.crc32(body)))


def test_declared_sizes_are_checked_before_allocation():
    # A header that declares a 4 GB string is refused as truncated, not allocated.
    payload = bytearray(_payload())
    struct.pack_into("<I", payload, 34, 2**32 - 1)
    body = bytes(payload[:-4])
    payload[-4:] = struct.pack("<I", zlib.crc32(body))
    with pytest.raises(TruncatedPayload, match="declares"):
        container.unpack(bytes(payload))


def test_header_limits_are_enforced_on_write():
    bad = ViewHeader(**{**HEADER.__dict__, "pad_bottom": 7})
    with pytest.raises(CorruptPayload, match="multiple of 64"):
        container.pack(CodedView(bad, b"", b""))
    with pytest.raises(CorruptPayload, match="name length"):
        container.pack(CodedView(ViewHeader(**{**HEADER.__dict__, "model_name": "x" * 65}), b"", b""))

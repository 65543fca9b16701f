"""A ``CompressedLatent``'s payload is parsed once and every field the message repeats is checked."""
from types import SimpleNamespace

import pytest

from parahydra_ros.codec import container
from parahydra_ros.codec.container import CodedView, ViewHeader
from parahydra_ros.codec.errors import CorruptPayload, MessageMismatch, TruncatedPayload
from parahydra_ros.codec.latent_message import REPEATED_FIELDS, parse_latent

HEADER = ViewHeader(model_name="parahydra-small", model_hash="0123456789abcdef", quality=3, height=480,
                    width=640, pad_bottom=32, pad_right=0, mono=False, symbols_hash="fedcba9876543210")
PAYLOAD = container.pack(CodedView(HEADER, b"z" * 40, b"y" * 900))


def message(payload: bytes = PAYLOAD, **changes):
    """A message as an encoder fills it (any object with the fields will do: rclpy, rosbags)."""
    fields = dict(height=HEADER.height, width=HEADER.width, model_name=HEADER.model_name,
                  model_hash=HEADER.model_hash, quality=HEADER.quality, format_version=container.FORMAT_VERSION,
                  payload_size=len(payload), payload=payload)
    return SimpleNamespace(**{**fields, **changes})


def test_a_consistent_message_gives_the_parsed_payload():
    assert parse_latent(message()) == container.unpack(PAYLOAD)
    assert set(REPEATED_FIELDS) | {"format_version", "payload_size"} == {
        "height", "width", "model_name", "model_hash", "quality", "format_version", "payload_size"}


@pytest.mark.parametrize("field, value, reason", [
    ("height", 479, "MessageHeightMismatch"),
    ("width", 320, "MessageWidthMismatch"),
    ("model_name", "parahydra-paper", "MessageModelNameMismatch"),
    ("model_hash", "0" * 16, "MessageModelHashMismatch"),
    ("quality", 2, "MessageQualityMismatch"),
    ("format_version", container.FORMAT_VERSION + 1, "MessageFormatVersionMismatch"),
    ("payload_size", len(PAYLOAD) - 1, "MessagePayloadSizeMismatch"),
])
def test_every_repeated_field_is_checked_with_its_own_reason(field, value, reason):
    with pytest.raises(MessageMismatch) as caught:
        parse_latent(message(**{field: value}))
    assert caught.value.reason == reason and caught.value.field == field
    assert f"the message says {field} {value!r}" in str(caught.value)


def test_a_bad_payload_keeps_the_container_s_reason():
    corrupt = bytearray(PAYLOAD)
    corrupt[len(corrupt) // 2] ^= 0xFF
    with pytest.raises(CorruptPayload) as caught:
        parse_latent(message(bytes(corrupt)))
    assert caught.value.reason == "CorruptPayload"
    with pytest.raises(TruncatedPayload):
        parse_latent(message(PAYLOAD[:-10]))

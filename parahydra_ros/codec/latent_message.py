"""A ``CompressedLatent`` message and its payload: parsed once, every repeated field checked.

The message repeats, so that tools read them without parsing, six fields of its
payload's header (``height``, ``width``, ``model_name``, ``model_hash``, ``quality``,
``format_version``) and the payload's length (``payload_size``). A decoder (the decoder
node, ``parahydra bag decompress``) calls :func:`parse_latent` once per message: the
payload is parsed and CRC-checked once (``container.unpack``), each repeated field is
compared with it, and the parsed ``CodedView`` goes on to
``ParaHydraCodec.decode_group``, which does not parse it again.

A disagreement raises ``MessageMismatch`` whose ``reason`` names the field
(``MessageHeightMismatch``, ``MessageQualityMismatch``, …); a payload that cannot be
parsed raises its own ``PayloadError`` (``CorruptPayload``, ``TruncatedPayload``, …).
ROS-free: ``msg`` is any object with the message's fields (an rclpy or a rosbags message).
"""
from __future__ import annotations

from typing import Any

from . import container
from .container import CodedView
from .errors import MessageMismatch

#: Message fields that repeat a field of the payload's header, by the same name.
REPEATED_FIELDS = ("height", "width", "model_name", "model_hash", "quality")


def parse_latent(msg: Any) -> CodedView:
    """The parsed payload of ``msg`` after checking every field the message repeats from it."""
    payload = bytes(msg.payload)
    if msg.payload_size != len(payload):
        raise MessageMismatch("payload_size", msg.payload_size, len(payload))
    view = container.unpack(payload)  # a payload of another format version raises here
    if msg.format_version != container.FORMAT_VERSION:
        raise MessageMismatch("format_version", msg.format_version, container.FORMAT_VERSION)
    for field in REPEATED_FIELDS:
        in_message, in_payload = getattr(msg, field), getattr(view.header, field)
        if in_message != in_payload:
            raise MessageMismatch(field, in_message, in_payload)
    return view

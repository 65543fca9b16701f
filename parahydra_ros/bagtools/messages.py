"""The message types a bag tool reads and writes, in a ``rosbags`` typestore (no rclpy).

The typestore is ROS 2 Kilted's (the distribution this package targets) plus
``parahydra_ros/msg/CompressedLatent`` registered from its ``.msg`` text, so that
``rosbags`` writes the same CDR bytes, definition and type hash (RIHS01) as a node
built by rosidl, and ``ros2 bag info``, Foxglove or any ``rosbags`` reader sees a
proper schema. The text is looked up, in order:

1. the installed share directory, ``<share>/parahydra_ros/msg/CompressedLatent.msg``,
   through ``ament_index_python`` when it works (a colcon/CMake install);
2. ``<sys.prefix>/share/parahydra_ros/msg/CompressedLatent.msg`` (the same file in a
   virtual environment's prefix, without ``AMENT_PREFIX_PATH``);
3. ``msg/CompressedLatent.msg`` beside the package (a source checkout).

Reading a bag, the definition the bag itself stores is used when it has one (it is
the one its messages were written with). Pixel conversions are the ROS-free ones of
:mod:`parahydra_ros.codec.image_conversions`, which take any object with the
message's fields: here, ``rosbags`` message classes.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ..codec.container import FORMAT_VERSION
from ..codec import image_conversions as conv

if TYPE_CHECKING:
    from ..codec.checkpoint import ModelIdentity

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
LATENT = "parahydra_ros/msg/CompressedLatent"
#: Camera topic types ``compress`` accepts.
CAMERA_TYPES = (IMAGE, COMPRESSED_IMAGE)

_PACKAGE = "parahydra_ros"
_LATENT_FILE = Path("msg") / "CompressedLatent.msg"


class DefinitionNotFound(FileNotFoundError):
    """The ``CompressedLatent.msg`` text is in none of the places it is looked for."""


def latent_definition_path() -> Path:
    """Where ``CompressedLatent.msg`` is (see the module docstring for the search order)."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(_PACKAGE)) / _LATENT_FILE)
    except Exception:  # not installed, no AMENT_PREFIX_PATH, no ament_index_python
        pass
    candidates.append(Path(sys.prefix) / "share" / _PACKAGE / _LATENT_FILE)
    candidates.append(Path(__file__).resolve().parents[2] / _LATENT_FILE)
    for path in candidates:
        if path.is_file():
            return path
    raise DefinitionNotFound(
        f"{_LATENT_FILE.name} not found (looked in {', '.join(str(p) for p in candidates)}); "
        "install parahydra_ros (colcon build, or scripts/setup.sh) or run from its source checkout")


def make_typestore(latent_definition: str | None = None) -> Typestore:
    """Kilted's types plus ``CompressedLatent`` (from ``latent_definition`` text, else the installed .msg)."""
    store = get_typestore(Stores.ROS2_KILTED)
    text = latent_definition or latent_definition_path().read_text()
    store.register(get_types_from_msg(text, LATENT))
    return store


def stamp_ns(header: Any) -> int:
    """``header.stamp`` in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def camera_pixels(msg: Any, msgtype: str) -> tuple[np.ndarray, str]:
    """The pixels to code of an ``Image`` or ``CompressedImage``, and the encoding to restore.

    Raises ``UnsupportedEncoding`` or ``MalformedImage`` (both ``ValueError``).
    """
    if msgtype == COMPRESSED_IMAGE:
        return conv.compressed_to_pixels(msg.format, msg.data)
    return conv.msg_to_pixels(msg), msg.encoding


class MessageFactory:
    """Builds and (de)serializes the messages of one typestore."""

    def __init__(self, typestore: Typestore):
        self.typestore = typestore
        self._latent = typestore.types[LATENT]
        self._image = typestore.types[IMAGE]

    def deserialize(self, data: bytes, msgtype: str) -> Any:
        return self.typestore.deserialize_cdr(data, msgtype)

    def serialize(self, msg: Any, msgtype: str) -> bytes:
        return bytes(self.typestore.serialize_cdr(msg, msgtype))

    def latent(self, header: Any, camera: str, frame_index: int, pixels: np.ndarray, encoding: str,
               identity: ModelIdentity, quality: int, payload: bytes, encode_ms: float) -> Any:
        """A ``CompressedLatent`` as the encoder node fills it (``camera``: the source topic here)."""
        height, width = pixels.shape[:2]
        return self._latent(
            header=header, camera=camera, frame_index=frame_index, height=height, width=width,
            encoding=encoding, model_name=identity.name, model_hash=identity.hash, quality=quality,
            format_version=FORMAT_VERSION, payload_size=len(payload),
            bits_per_pixel=8 * len(payload) / (height * width), encode_time_ms=encode_ms,
            payload=np.frombuffer(payload, np.uint8))

    def image(self, header: Any, pixels: np.ndarray, encoding: str) -> Any:
        """A ``sensor_msgs/Image`` of ``pixels`` in ``encoding`` with ``header`` (raises ``UnsupportedEncoding``)."""
        fields = conv.pixels_to_image(pixels, encoding)
        return self._image(header=header, height=fields["height"], width=fields["width"],
                           encoding=fields["encoding"], is_bigendian=fields["is_bigendian"],
                           step=fields["step"], data=np.frombuffer(fields["data"], np.uint8))

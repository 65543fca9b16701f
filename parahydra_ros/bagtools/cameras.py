"""The camera frames of a bag and their groups: the one reader of a bag's camera topics.

``read_camera_frame`` turns one ``sensor_msgs/Image`` or ``CompressedImage`` message of
the bag into the pixels the codec codes (uint8 RGB, or mono for a mono camera) and the
encoding to restore, with a ``FrameError`` naming the message when it cannot.
``camera_groups`` reads the camera topics of a bag in log-time order and groups their
frames exactly as the decoder node groups its cameras (``sync.group_by_time``, the
node's ``CameraGrouper`` with bag time as the clock), so every frame lands in exactly
one group. ``parahydra bag compress`` reads its camera frames with the first; the
training datasets of a bag (``data.bag_groups``) and ``parahydra demo --bag`` with the
second.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..sync import Group, SyncSettings, group_by_time
from . import messages as m
from .errors import FrameError
from .reading import BagMessage, InputBag, check_camera_topics, open_bag


@dataclass(frozen=True)
class CameraFrame:
    """One camera message of a bag: where it is, its header, its pixels and their encoding."""

    message: BagMessage
    header: Any  # std_msgs/Header of the camera message
    pixels: np.ndarray  # uint8 H×W×3 RGB, or H×W mono
    encoding: str  # the sensor_msgs/Image encoding to restore
    extra_bytes: int = 0  # an Image's data beyond height × step (legal, ignored)

    @property
    def stamp_ns(self) -> int:
        return m.stamp_ns(self.header)


def read_camera_frame(bag: InputBag, factory: m.MessageFactory, msg: BagMessage) -> CameraFrame:
    """The frame of one ``Image`` / ``CompressedImage`` message (``FrameError`` if it cannot be read)."""
    msgtype = msg.connection.msgtype

    def fail(reason: str, error: BaseException) -> FrameError:
        return FrameError(bag.path, msg.topic, msg.topic_index, msg.index, f"{reason}: {error}")

    try:
        camera_msg = factory.deserialize(msg.data, msgtype)
    except Exception as error:  # rosbags raises what the bytes provoke
        raise fail(f"cannot deserialize the {msgtype}", error) from error
    try:
        pixels, encoding = m.camera_pixels(camera_msg, msgtype)
    except ValueError as error:  # UnsupportedEncoding, MalformedImage
        raise fail("cannot convert the image", error) from error
    extra = 0
    if msgtype == m.IMAGE:
        extra = max(0, len(camera_msg.data) - int(camera_msg.height) * int(camera_msg.step))
    return CameraFrame(msg, camera_msg.header, pixels, encoding, extra)


def camera_groups(path: Path | str, topics: Sequence[str],
                  sync: SyncSettings = SyncSettings()) -> Iterator[Group[CameraFrame]]:
    """The groups of the camera ``topics`` of the bag at ``path`` (items in topic order; ``None``
    where a camera has no frame in a partial group). ``BagError`` when the bag cannot be read, a
    topic is not a distinct camera topic of the bag, or a frame cannot be read. The bag is
    closed when the iterator is exhausted or closed."""
    with open_bag(path) as bag:
        topics = check_camera_topics(bag, topics)
        factory = m.MessageFactory(m.make_typestore(bag.definition(m.LATENT)))
        slot = {topic: i for i, topic in enumerate(topics)}

        def frames() -> Iterator[tuple[int, int, CameraFrame]]:
            for msg in bag.messages():
                if msg.topic in slot:
                    frame = read_camera_frame(bag, factory, msg)
                    yield slot[msg.topic], frame.stamp_ns, frame

        yield from group_by_time(frames(), len(topics), sync)

"""Training groups from a rosbag: the approximate-time groups of its camera topics.

Teams train on their own recordings with ``parahydra train --data bag:PATH:TOPIC,TOPIC…``.
The bag (rosbag2 MCAP/SQLite3 or ROS 1, read by ``bagtools``) is read once; its camera
messages (``sensor_msgs/Image`` in any encoding the encoder node takes, or
``CompressedImage``) are grouped exactly as the decoder node groups them
(``bagtools.grouping``: approximate time, same ``slop``), and every complete group whose
views share one size becomes a sample — the views of one instant, in topic order. Mono
cameras are expanded to three equal channels. Views are kept PNG-compressed in memory
(lossless, smaller than raw pixels): a recording of N groups of V VGA views takes
roughly N·V·0.5 MB of memory.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..bagtools import messages as m
from ..bagtools.errors import FrameError
from ..bagtools.grouping import SyncSettings, grouped
from ..bagtools.reading import check_camera_topics, open_bag
from ..codec.images import as_rgb


class BagGroupDataset:
    """Complete, same-size approximate-time groups of ``topics`` in the bag at ``path``.

    ``skipped`` counts the groups left out (a camera missing, or views of different sizes).
    ``BagError`` (a ``bagtools`` error naming file, topic and message) when the bag cannot be
    read, a topic is not a camera topic, or a camera message cannot be converted to pixels;
    ``ValueError`` when no complete group is left.
    """

    def __init__(self, path: str | Path, topics: Sequence[str], sync: SyncSettings = SyncSettings()):
        self.path = Path(path)
        self.skipped = 0
        self.groups: list[tuple[bytes, ...]] = []
        with open_bag(self.path) as bag:
            self.topics = check_camera_topics(bag, topics)
            for group in grouped(self._frames(bag), len(self.topics), sync):
                views = group.items
                if not group.complete or len({v.shape for v in views}) != 1:
                    self.skipped += 1
                    continue
                self.groups.append(tuple(_png(view) for view in views))
        if not self.groups:
            raise ValueError(f"{self.path}: no complete group of same-size views on {', '.join(self.topics)} "
                             f"({self.skipped} incomplete or mixed-size groups)")

    def __len__(self) -> int:
        return len(self.groups)

    def view_count(self, index: int) -> int:
        """How many views group ``index`` has (one per topic)."""
        return len(self.topics)

    def views(self, index: int, positions: Sequence[int] | None = None) -> np.ndarray:
        """Views of group ``index`` (those at ``positions`` in topic order; default all), V×H×W×3 RGB uint8."""
        chosen = range(len(self.topics)) if positions is None else positions
        return np.stack([_unpng(self.groups[index][i]) for i in chosen])

    def _frames(self, bag):
        """``(camera index, header stamp ns, RGB pixels)`` of the camera messages in log-time order."""
        factory = m.MessageFactory(m.make_typestore())
        slot = {topic: i for i, topic in enumerate(self.topics)}
        for msg in bag.messages():
            if msg.topic not in slot:
                continue
            msgtype = msg.connection.msgtype
            try:
                camera_msg = factory.deserialize(msg.data, msgtype)
                pixels, _ = m.camera_pixels(camera_msg, msgtype)
            except Exception as error:  # rosbags raises what the bytes provoke; conversions raise ValueError
                raise FrameError(bag.path, msg.topic, msg.topic_index, msg.index,
                                 f"cannot read the {msgtype} as an image: {error}") from error
            yield slot[msg.topic], m.stamp_ns(camera_msg.header), as_rgb(pixels)


def parse_bag_source(spec: str) -> tuple[Path, list[str]]:
    """``PATH:TOPIC,TOPIC…`` (the part after ``bag:`` of ``--data``) → (path, topics)."""
    path, sep, topics = spec.rpartition(":")
    names = [t for t in topics.split(",") if t]
    if not sep or not path or not names:
        raise ValueError(f"bag source {spec!r}: expected bag:PATH:/camera1/topic,/camera2/topic")
    return Path(path), names


def _png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"cannot PNG-encode a view of shape {rgb.shape}")
    return data.tobytes()


def _unpng(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

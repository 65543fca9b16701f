"""Training groups from a rosbag: the approximate-time groups of its camera topics.

Teams train on their own recordings with ``parahydra train --data bag:PATH:TOPIC,TOPIC…``.
The bag (rosbag2 MCAP/SQLite3 or ROS 1) is read once by ``bagtools.cameras.camera_groups``,
the one reader of a bag's camera topics: its camera messages (``sensor_msgs/Image`` in any
encoding the encoder node takes, or ``CompressedImage``) are grouped exactly as the decoder
node groups them (approximate time, same ``slop``), and every complete group whose
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

from ..bagtools.cameras import camera_groups
from ..codec.image_conversions import as_rgb
from ..sync import SyncSettings


class BagGroupDataset:
    """Complete, same-size approximate-time groups of ``topics`` in the bag at ``path``.

    ``skipped`` counts the groups left out (a camera missing, or views of different sizes).
    ``BagError`` (a ``bagtools`` error naming file, topic and message) when the bag cannot be
    read, a topic is not a camera topic, or a camera message cannot be converted to pixels;
    ``ValueError`` when no complete group is left.
    """

    def __init__(self, path: str | Path, topics: Sequence[str], sync: SyncSettings = SyncSettings()):
        self.path = Path(path)
        self.topics = list(topics)
        self.skipped = 0
        self.groups: list[tuple[bytes, ...]] = []
        for group in camera_groups(self.path, self.topics, sync):
            views = [as_rgb(frame.pixels) for frame in group.items] if group.complete else []
            if not views or len({v.shape for v in views}) != 1:
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

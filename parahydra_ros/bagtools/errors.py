"""Why a bag cannot be compressed, decompressed or read: one class per reason, all ``BagError``.

Every message names the file and, where one is involved, the topic and the message
(its index on the topic and in the whole bag, in log-time order, both from 0).
"""
from __future__ import annotations

from pathlib import Path


class BagError(Exception):
    """A bag that cannot be processed; the message says which file, topic and message, and why."""


class BagReadError(BagError):
    """The input cannot be read: not a bag, truncated, corrupt, or an unsupported format."""


class TopicError(BagError):
    """A topic that does not exist, has the wrong type, or whose output name is taken."""


class OutputError(BagError):
    """The output exists (and ``--force`` was not given) or overlaps the input."""


class FrameError(BagError):
    """One message that cannot be converted, coded or decoded.

    ``topic``, ``topic_index`` (the message's index on its topic) and ``bag_index``
    (its index in the whole bag) say which; the message text says why.
    """

    def __init__(self, path: Path | str, topic: str, topic_index: int, bag_index: int, reason: str):
        self.path = Path(path)
        self.topic = topic
        self.topic_index = topic_index
        self.bag_index = bag_index
        self.reason = reason
        super().__init__(f"{path}: {topic} message {topic_index} (bag message {bag_index}): {reason}")

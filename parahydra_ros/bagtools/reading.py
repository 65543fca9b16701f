"""Open an input bag and read its messages in log-time order, with their indices, never writing to it.

Reads a rosbag2 directory (MCAP or SQLite3 storage, compressed or not), a bare
``.mcap`` or ``.db3`` file, or a ROS 1 ``.bag``, which is first converted by
``rosbags.convert`` into a temporary rosbag2 (ROS 1 types become their ROS 2
counterparts, e.g. ``Header.seq`` is dropped; the temporary copy lives under
``$TMPDIR`` and is removed afterwards). All reading goes through ``rosbags``.

Every message carries its index in the whole bag and on its topic (log-time order,
from 0), so an error can say exactly which message is at fault. A bag that stops
being readable part-way, or that holds fewer messages than its metadata declares
(cut short), raises ``BagReadError`` naming the last message read.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader

from .errors import BagReadError, TopicError
from .messages import CAMERA_TYPES

#: Storage of each input kind; ``rosbag1`` inputs are written out as MCAP by default.
STORAGES = ("mcap", "sqlite3")
_RECOVERY_HINT = ("the bag is truncated or corrupt, e.g. a recording that did not stop cleanly "
                  "(`ros2 bag reindex` rebuilds a rosbag2 directory's metadata, `mcap recover` "
                  "salvages an MCAP file)")


@dataclass(frozen=True)
class BagMessage:
    """One serialized message of the input and where it is."""

    index: int  # in the whole bag, log-time order
    topic_index: int  # among the messages of its topic
    connection: Connection
    log_time: int  # ns
    data: bytes

    @property
    def topic(self) -> str:
        return self.connection.topic


class InputBag:
    """An open input bag: its connections, topics and messages."""

    def __init__(self, path: Path, reader: Reader, storage: str):
        self.path = path
        self.reader = reader
        #: ``mcap``, ``sqlite3`` or ``rosbag1`` (the storage of the original file).
        self.storage = storage

    @property
    def connections(self) -> list[Connection]:
        return self.reader.connections

    @property
    def topics(self) -> dict[str, Any]:
        """Topic name → ``rosbags`` ``TopicInfo`` (``msgtype``, ``msgcount``, ``connections``)."""
        return self.reader.topics

    @property
    def message_count(self) -> int:
        return self.reader.message_count

    @property
    def custom_data(self) -> dict[str, str]:
        """The rosbag2 metadata's ``custom_data`` (empty when there is none)."""
        metadata = getattr(self.reader.storage, "metadata", None)
        return dict(getattr(metadata, "custom", None) or {})

    def definition(self, msgtype: str) -> str | None:
        """The ``.msg`` definition text of ``msgtype`` stored in the bag, if it stores one."""
        for connection in self.connections:
            if connection.msgtype == msgtype and connection.msgdef.format == MessageDefinitionFormat.MSG:
                return connection.msgdef.data or None
        return None

    def messages(self) -> Iterator[BagMessage]:
        """Every message in log-time order; ``BagReadError`` if the bag cannot be read to its end."""
        counts: Counter[str] = Counter()
        last: BagMessage | None = None
        iterator = self.reader.messages()
        index = 0
        while True:
            try:
                connection, log_time, data = next(iterator)
            except StopIteration:
                break
            except Exception as error:  # rosbags, sqlite3, zstd, struct: the bag's bytes are bad
                raise BagReadError(f"{self.path}: unreadable {_after(last)} ({error}): {_RECOVERY_HINT}") from error
            last = BagMessage(index, counts[connection.topic], connection, log_time, bytes(data))
            counts[connection.topic] += 1
            index += 1
            yield last
        for topic, info in self.topics.items():
            if counts[topic] < info.msgcount:
                raise BagReadError(
                    f"{self.path}: {topic} has {info.msgcount} messages in the bag's metadata but it "
                    f"ends {_after(last, topic, counts[topic])}: {_RECOVERY_HINT}")


def _after(last: BagMessage | None, topic: str | None = None, count: int = 0) -> str:
    if topic is not None:
        return f"after {topic} message {count - 1}" if count else f"before {topic} message 0"
    if last is None:
        return "before its first message"
    return f"after bag message {last.index} ({last.topic} message {last.topic_index})"


def storage_of(path: Path) -> str:
    """``mcap``, ``sqlite3`` or ``rosbag1``: the storage of a bag path (``BagReadError`` if none)."""
    if path.is_dir():
        if any(path.glob("*.mcap")) or any(path.glob("*.mcap.zstd")):
            return "mcap"
        if any(path.glob("*.db3")) or any(path.glob("*.db3.zstd")):
            return "sqlite3"
        raise BagReadError(f"{path}: a directory without .mcap or .db3 files is not a rosbag2")
    kinds = {".mcap": "mcap", ".db3": "sqlite3", ".bag": "rosbag1"}
    if path.suffix not in kinds:
        raise BagReadError(f"{path}: not a bag (expected a rosbag2 directory, .mcap, .db3 or ROS 1 .bag)")
    return kinds[path.suffix]


@contextmanager
def open_bag(path: Path | str) -> Iterator[InputBag]:
    """Open ``path`` for reading (read-only: SQLite is opened immutable, MCAP read-only)."""
    path = Path(path)
    if not path.exists():
        raise BagReadError(f"{path}: no such bag")
    storage = storage_of(path)
    with _as_rosbag2(path, storage) as readable:
        reader = Reader(readable)
        try:
            reader.open()
        except Exception as error:
            raise BagReadError(f"{path}: cannot open the bag ({error}): {_RECOVERY_HINT}") from error
        try:
            yield InputBag(path, reader, storage)
        finally:
            reader.close()


@contextmanager
def _as_rosbag2(path: Path, storage: str) -> Iterator[Path]:
    """``path`` itself, or a ROS 1 bag converted to a temporary rosbag2."""
    if storage != "rosbag1":
        yield path
        return
    from rosbags.convert import ConverterError, convert
    from rosbags.typesys import Stores, get_typestore

    with tempfile.TemporaryDirectory(prefix="parahydra-ros1-") as tmp:
        converted = Path(tmp) / path.stem
        try:
            convert([path], converted, "mcap", 9, None, "file", None, get_typestore(Stores.ROS2_KILTED),
                    [], [], [], [])
        except ConverterError as error:
            raise BagReadError(f"{path}: cannot convert the ROS 1 bag: {error}") from error
        if not converted.exists():
            raise BagReadError(f"{path}: the ROS 1 bag holds no messages")
        yield converted


def disk_size(path: Path) -> int:
    """Bytes a bag takes on disk (a file, or every file of a directory)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def check_camera_topics(bag: InputBag, cameras: Sequence[str]) -> list[str]:
    """``cameras`` as a list, after checking each is a distinct ``Image``/``CompressedImage`` topic
    of ``bag``; ``TopicError`` names the bag's image topics otherwise."""
    cameras = list(cameras)
    if not cameras:
        raise TopicError(f"{bag.path}: no camera topics given")
    if len(set(cameras)) != len(cameras):
        raise TopicError(f"{bag.path}: a camera topic is given twice: {', '.join(cameras)}")
    topics = bag.topics
    image_topics = sorted(t for t, info in topics.items() if info.msgtype in CAMERA_TYPES)
    for camera in cameras:
        if camera not in topics:
            raise TopicError(f"{bag.path}: camera topic {camera} does not exist in the bag (its image topics: "
                             f"{', '.join(image_topics) or 'none'})")
        if topics[camera].msgtype not in CAMERA_TYPES:
            raise TopicError(f"{bag.path}: camera topic {camera} is a {topics[camera].msgtype}, not one of "
                             f"{', '.join(CAMERA_TYPES)}")
    return cameras

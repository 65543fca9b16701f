"""``info``: per-topic message counts and sizes, and for latent topics the model, quality and bits per pixel."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import messages as m
from .errors import FrameError
from .reading import disk_size, open_bag
from .summary import human_bytes
from .topics import restored_topic


@dataclass
class LatentStats:
    """What the ``CompressedLatent`` messages of one topic say about their coding."""

    restores: str
    models: Counter[str] = field(default_factory=Counter)  # "name (hash)" → frames
    qualities: Counter[int] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)  # "WxH encoding" → frames
    payload_bytes: int = 0
    pixels: int = 0

    @property
    def bits_per_pixel(self) -> float:
        return 8 * self.payload_bytes / self.pixels if self.pixels else float("nan")


@dataclass
class TopicInfo:
    topic: str
    msgtype: str
    messages: int = 0
    bytes: int = 0
    latent: LatentStats | None = None


@dataclass
class BagInfo:
    path: Path
    storage: str
    disk_bytes: int
    start_ns: int
    duration_ns: int
    topics: list[TopicInfo]

    @property
    def messages(self) -> int:
        return sum(t.messages for t in self.topics)


def bag_info(path: Path | str) -> BagInfo:
    """Read the whole bag once (sizes are the serialized message bytes of each topic)."""
    path = Path(path)
    with open_bag(path) as bag:
        topics = {t: TopicInfo(t, info.msgtype or "(several types)") for t, info in bag.topics.items()}
        latent_topics = [t for t, info in topics.items() if info.msgtype == m.LATENT]
        others = set(topics) - set(latent_topics)
        for topic in latent_topics:
            topics[topic].latent = LatentStats(restored_topic(topic, others))
        factory = m.MessageFactory(m.make_typestore(bag.definition(m.LATENT))) if latent_topics else None
        for msg in bag.messages():
            info = topics[msg.topic]
            info.messages += 1
            info.bytes += len(msg.data)
            if info.latent is None or msg.connection.msgtype != m.LATENT:
                continue
            try:
                latent = factory.deserialize(msg.data, m.LATENT)
            except Exception as error:
                raise FrameError(path, msg.topic, msg.topic_index, msg.index,
                                 f"cannot deserialize the {m.LATENT}: {error}") from error
            stats = info.latent
            stats.models[f"{latent.model_name} ({latent.model_hash})"] += 1
            stats.qualities[latent.quality] += 1
            stats.sizes[f"{latent.width}x{latent.height} {latent.encoding}"] += 1
            stats.payload_bytes += len(latent.payload)
            stats.pixels += latent.width * latent.height
        start, duration = (bag.reader.start_time, bag.reader.duration) if bag.message_count else (0, 0)
        return BagInfo(path, bag.storage, disk_size(path), start, duration, list(topics.values()))


def format_info(info: BagInfo) -> str:
    lines = [f"bag       {info.path} ({info.storage}, {human_bytes(info.disk_bytes)} on disk)",
             f"messages  {info.messages} over {info.duration_ns / 1e9:.3f} s"]
    rows = [("topic", "type", "msgs", "size", "B/msg")]
    for t in info.topics:
        rows.append((t.topic, t.msgtype, str(t.messages), human_bytes(t.bytes),
                     f"{t.bytes / t.messages:.0f}" if t.messages else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row, t in zip(rows, [None, *info.topics]):
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if t is not None and t.latent is not None:
            s = t.latent
            lines.append(f"    model {_listed(s.models)}; quality {_listed(s.qualities)}; "
                         f"{s.bits_per_pixel:.4f} bpp; {_listed(s.sizes)}; restores {s.restores}")
    return "\n".join(line.rstrip() for line in lines)


def _listed(counts: Counter) -> str:
    if not counts:
        return "-"
    if len(counts) == 1:
        return str(next(iter(counts)))
    return ", ".join(f"{k} ×{n}" for k, n in sorted(counts.items(), key=lambda kv: str(kv[0])))

"""What a run did, topic by topic: messages, bytes before and after, ratio, PSNR; and its progress bar.

``after`` is serialized message bytes; ``zstd`` (MCAP output, whose chunks are
zstd-compressed) is what the topic's messages compress to with the chunks' zstd, i.e.
about what the topic costs on disk. Frames kept unchanged (``--keep-bad-frames``) and
images whose data is longer than ``height × step`` (legal: the extra bytes are ignored)
are counted per topic and listed below the table.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm


@dataclass
class TopicSummary:
    """One input topic and the output topic it became; sizes are serialized message bytes."""

    topic: str
    msgtype: str
    out_topic: str
    out_msgtype: str
    messages: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    psnr_sum: float = 0.0
    psnr_count: int = 0
    bytes_zstd: int | None = None  # the output topic's messages compressed with the chunks' zstd
    kept_bad: int = 0  # malformed camera messages copied unchanged (``keep_bad_frames``)
    long_data: int = 0  # images whose data is longer than height × step (extra bytes ignored)

    def add(self, bytes_in: int, bytes_out: int) -> None:
        self.messages += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out

    def add_psnr(self, value: float) -> None:
        self.psnr_sum += value
        self.psnr_count += 1

    @property
    def ratio(self) -> float:
        """Output over input bytes (``nan`` for an empty topic)."""
        return self.bytes_out / self.bytes_in if self.bytes_in else math.nan

    @property
    def mean_psnr(self) -> float | None:
        return self.psnr_sum / self.psnr_count if self.psnr_count else None


@dataclass
class Summary:
    """A ``compress`` or ``decompress`` run; ``groups`` counts partial groups too."""

    command: str
    input: Path
    output: Path
    topics: dict[str, TopicSummary] = field(default_factory=dict)
    frames: int = 0
    groups: int = 0
    partial_groups: int = 0
    seconds: float = 0.0
    disk_in: int = 0
    disk_out: int = 0
    bad_frames: list[str] = field(default_factory=list)  # why each kept bad frame could not be coded
    notes: list[str] = field(default_factory=list)  # what the run said on the way (leftovers removed, …)

    def topic(self, topic: str, msgtype: str, out_topic: str, out_msgtype: str) -> TopicSummary:
        if topic not in self.topics:
            self.topics[topic] = TopicSummary(topic, msgtype, out_topic, out_msgtype)
        return self.topics[topic]

    def set_compressed_sizes(self, sizes: dict[str, int]) -> None:
        """``OutputBag.compressed_sizes()``, keyed by output topic."""
        for t in self.topics.values():
            if t.out_topic in sizes:
                t.bytes_zstd = sizes[t.out_topic]

    @property
    def long_data(self) -> int:
        return sum(t.long_data for t in self.topics.values())

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.nan

    @property
    def mean_psnr(self) -> float | None:
        """Mean PSNR (dB) over every verified frame, ``None`` when nothing was verified."""
        count = sum(t.psnr_count for t in self.topics.values())
        return sum(t.psnr_sum for t in self.topics.values()) / count if count else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(input=str(self.input), output=str(self.output), mean_psnr=self.mean_psnr,
                    frames_per_second=self.frames_per_second)
        for name, topic in self.topics.items():
            data["topics"][name].update(ratio=topic.ratio, mean_psnr=topic.mean_psnr)
        return data


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError


def format_summary(summary: Summary) -> str:
    """A table of the topics (by name), then the totals."""
    verified = summary.mean_psnr is not None
    zstd = any(t.bytes_zstd is not None for t in summary.topics.values())
    rows = [("topic", "→ output topic", "msgs", "before", "after", "ratio") + (("zstd",) if zstd else ())
            + (("PSNR dB",) if verified else ())]
    for t in sorted(summary.topics.values(), key=lambda t: t.topic):
        out = t.out_topic if t.out_topic != t.topic else "(copied)"
        packed = (human_bytes(t.bytes_zstd) if t.bytes_zstd is not None else "-",) if zstd else ()
        psnr = (f"{t.mean_psnr:.2f}" if t.mean_psnr is not None else "-",) if verified else ()
        rows.append((t.topic, out, str(t.messages), human_bytes(t.bytes_in), human_bytes(t.bytes_out),
                     f"{t.ratio:.4f}" if t.bytes_in else "-") + packed + psnr)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    ratio = summary.disk_out / summary.disk_in if summary.disk_in else math.nan
    lines.append(f"{summary.command}: {summary.input} ({human_bytes(summary.disk_in)}) → {summary.output} "
                 f"({human_bytes(summary.disk_out)}), ratio {ratio:.4f}")
    lines.append(f"{summary.frames} frames in {summary.groups} groups ({summary.partial_groups} partial), "
                 f"{summary.seconds:.1f} s, {summary.frames_per_second:.1f} frames/s")
    if verified:
        lines.append(f"mean PSNR {summary.mean_psnr:.2f} dB (decoded jointly and compared with the input)")
    if zstd:
        lines.append("zstd: each topic's messages compressed with the output's chunk compression (≈ its size on disk)")
    for t in sorted(summary.topics.values(), key=lambda t: t.topic):
        if t.long_data:
            lines.append(f"{t.topic}: {t.long_data} image(s) with data longer than height × step "
                         "(legal; the extra bytes were ignored)")
    if summary.bad_frames:
        lines.append(f"{len(summary.bad_frames)} malformed frame(s) copied unchanged (--keep-bad-frames):")
        lines.extend(f"  {reason}" for reason in summary.bad_frames)
    return "\n".join(line.rstrip() for line in lines)


class Progress:
    """A tqdm bar over camera frames showing frames/s and the bytes saved (or added) so far."""

    def __init__(self, total: int, enabled: bool, description: str):
        self.saved = 0
        self.bar = tqdm(total=total, unit="frame", desc=description, disable=not enabled,
                        dynamic_ncols=True, leave=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()

    def frame(self, bytes_in: int, bytes_out: int) -> None:
        self.saved += bytes_in - bytes_out
        change = f"saved {human_bytes(self.saved)}" if self.saved >= 0 else f"added {human_bytes(-self.saved)}"
        self.bar.set_postfix_str(change, refresh=False)
        self.bar.update(1)

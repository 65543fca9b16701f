"""``compress``: replace each camera topic of a bag by a ``CompressedLatent`` topic, copy the rest.

One pass over the input in log-time order. A camera message (``sensor_msgs/Image``
or ``CompressedImage``) is converted to pixels and coded alone (the encoder never
sees another view, exactly as ``encoder_node``), and its ``CompressedLatent`` is
written on ``<topic>/parahydra`` at the same log time, with the source header,
size and encoding. Every other message is copied byte for byte, with its log time,
on a connection with the same type, definition, type hash and offered QoS.

A camera message that cannot be read or coded stops the run with a ``FrameError``
naming it, unless ``keep_bad_frames``: then it is copied unchanged (same topic, type
and log time) and listed in the summary, so one bad frame never costs a recording
(``decompress`` copies it back beside the restored images). An ``Image`` whose data is
longer than ``height × step`` is legal: it is coded and counted in the summary.
The output MCAP's chunks are zstd-compressed (``writing.OutputBag``), and the summary
gives each topic's compressed size.

The camera frames (read by ``cameras.read_camera_frame``) are also grouped as the
decoder will group them (``sync.group_by_time``), to report the groups (complete and
partial) and, with ``verify``, to decode each group jointly and compare it with the
source pixels (PSNR).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codec.api import ParaHydraCodec
from ..codec.container import FORMAT_VERSION
from ..codec.metrics import psnr
from ..sync import SyncSettings, group_by_time
from . import messages as m
from .cameras import read_camera_frame
from .errors import BagError, FrameError, TopicError
from .reading import InputBag, check_camera_topics, disk_size, open_bag
from .summary import Progress, Summary
from .topics import latent_topic
from .writing import OutputBag, atomic_output, check_output, raise_if_stopped, stderr_notice

#: ``custom_data`` key of the output's metadata recording what coded it (informational).
CUSTOM_DATA_KEY = "parahydra_ros.compress"


@dataclass(frozen=True)
class _Frame:
    topic: str
    topic_index: int
    bag_index: int
    payload: bytes
    pixels: np.ndarray | None  # kept only to verify


def compress_bag(source: Path | str, output: Path | str, cameras: Sequence[str], codec: ParaHydraCodec,
                 quality: int, *, sync: SyncSettings = SyncSettings(), storage: str | None = None,
                 force: bool = False, verify: bool = False, progress: bool = False,
                 keep_bad_frames: bool = False, notice: Callable[[str], None] = stderr_notice,
                 stop: threading.Event | None = None) -> Summary:
    """Write ``output``: ``source`` with every camera topic replaced by its latent topic.

    ``keep_bad_frames``: copy a camera message that cannot be read or coded unchanged
    (and list it in the summary) instead of stopping. ``notice`` receives the one-line
    notes of the run (leftover staging folders removed), default stderr. ``stop``, once set,
    ends the run at the next message with ``KeyboardInterrupt`` and nothing written."""
    source, output = Path(source), Path(output)
    check_output(source, output, force)
    if not 0 <= quality < codec.num_qualities:
        raise BagError(f"quality {quality} outside 0..{codec.num_qualities - 1} of model {codec.identity.name}")
    start = time.perf_counter()
    with open_bag(source) as bag:
        cameras = _check_cameras(bag, cameras)
        factory = m.MessageFactory(m.make_typestore())
        summary = Summary("compress", source, output)

        def note(line: str) -> None:
            summary.notes.append(line)
            notice(line)

        with atomic_output(source, output, force, note) as target, \
                OutputBag(target, storage or _default_storage(bag), factory.typestore) as out:
            for key, value in bag.custom_data.items():
                out.set_custom_data(key, value)
            out.set_custom_data(CUSTOM_DATA_KEY, json.dumps({
                "model_name": codec.identity.name, "model_hash": codec.identity.hash, "quality": quality,
                "format_version": FORMAT_VERSION, "topics": {latent_topic(c): c for c in cameras}}))
            total = sum(bag.topics[c].msgcount for c in cameras)
            with Progress(total, progress, "compress") as bar:
                frames = _encode(bag, out, factory, codec, quality, cameras, summary, bar, verify, keep_bad_frames,
                                 stop)
                for group in group_by_time(frames, len(cameras), sync):
                    summary.groups += 1
                    summary.partial_groups += not group.complete
                    if verify:
                        _verify(codec, bag, group.items, summary)
            summary.set_compressed_sizes(out.compressed_sizes())
        summary.seconds = time.perf_counter() - start
        summary.disk_in, summary.disk_out = disk_size(source), disk_size(output)
    return summary


def _check_cameras(bag: InputBag, cameras: Sequence[str]) -> list[str]:
    cameras = check_camera_topics(bag, cameras)
    for camera in cameras:
        if latent_topic(camera) in bag.topics:
            raise TopicError(f"{bag.path}: {camera}'s latent topic {latent_topic(camera)} already exists in the bag")
    return cameras


def _default_storage(bag: InputBag) -> str:
    return "mcap" if bag.storage == "rosbag1" else bag.storage


def _encode(bag: InputBag, out: OutputBag, factory: m.MessageFactory, codec: ParaHydraCodec, quality: int,
            cameras: list[str], summary: Summary, bar: Progress, verify: bool,
            keep_bad_frames: bool, stop: threading.Event | None) -> Iterator[tuple[int, int, _Frame]]:
    """Copy or encode every message in log-time order; yield the camera frames for grouping."""
    slot = {camera: i for i, camera in enumerate(cameras)}
    routes, originals = {}, {}
    for connection in bag.connections:
        if connection.topic in slot:
            routes[connection.id] = out.add_connection(latent_topic(connection.topic), m.LATENT, like=connection)
        else:
            routes[connection.id] = out.copy_connection(connection)
    for msg in bag.messages():
        raise_if_stopped(stop)
        route = routes[msg.connection.id]
        msgtype = msg.connection.msgtype
        if msg.topic not in slot:
            out.write(route, msg.log_time, msg.data)
            summary.topic(msg.topic, msgtype, msg.topic, msgtype).add(len(msg.data), len(msg.data))
            continue
        try:
            frame = read_camera_frame(bag, factory, msg)
            pixels = frame.pixels
            began = time.perf_counter()
            try:
                payload = codec.encode(pixels, quality)
            except (ValueError, RuntimeError) as error:
                raise FrameError(bag.path, msg.topic, msg.topic_index, msg.index,
                                 f"cannot encode the image: {error}") from error
        except FrameError as error:
            if not keep_bad_frames:
                raise
            if msg.connection.id not in originals:  # the camera topic itself, only for its bad frames
                originals[msg.connection.id] = out.copy_connection(msg.connection)
            out.write(originals[msg.connection.id], msg.log_time, msg.data)
            topic = summary.topic(msg.topic, msgtype, latent_topic(msg.topic), m.LATENT)
            topic.add(len(msg.data), len(msg.data))
            topic.kept_bad += 1
            summary.bad_frames.append(str(error))
            bar.frame(len(msg.data), len(msg.data))
            continue
        encode_ms = 1e3 * (time.perf_counter() - began)
        latent = factory.latent(frame.header, msg.topic, msg.topic_index, pixels, frame.encoding,
                                codec.identity, quality, payload, encode_ms)
        data = factory.serialize(latent, m.LATENT)
        out.write(route, msg.log_time, data)
        topic = summary.topic(msg.topic, msgtype, latent_topic(msg.topic), m.LATENT)
        topic.add(len(msg.data), len(data))
        topic.long_data += frame.extra_bytes > 0
        summary.frames += 1
        bar.frame(len(msg.data), len(data))
        yield slot[msg.topic], frame.stamp_ns, _Frame(msg.topic, msg.topic_index, msg.index, payload,
                                                     pixels if verify else None)


def _verify(codec: ParaHydraCodec, bag: InputBag, items: tuple[_Frame | None, ...], summary: Summary) -> None:
    frames = [frame for frame in items if frame is not None]
    decoded = codec.decode_group([frame.payload for frame in frames])
    for row, frame in enumerate(frames):
        if row in decoded.errors:
            raise FrameError(bag.path, frame.topic, frame.topic_index, frame.bag_index,
                             f"the coded frame does not decode: {decoded.errors[row]}")
        summary.topics[frame.topic].add_psnr(psnr(frame.pixels, decoded.images[row]))

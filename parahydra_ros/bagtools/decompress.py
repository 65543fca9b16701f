"""``decompress``: the inverse of ``compress``; every ``CompressedLatent`` topic back to ``sensor_msgs/Image``.

One pass in log-time order. Every other message is copied byte for byte. Each
latent's payload is parsed and checked once, against the fields its message
repeats (``codec.latent_message``), and against the decoder's model. The latent
frames are grouped by header stamp as the decoder node groups them
(``sync.group_by_time``) and each group is decoded jointly (Para-JD across its views,
``ParaHydraCodec.decode_group``); a frame with no partner within the slop is decoded
alone, so none is lost. Each ``Image`` keeps
the latent's header (stamp, frame_id), size and encoding, and the log time of
the latent message (which ``compress`` kept from the camera message); it is
written on the topic :func:`~parahydra_ros.bagtools.topics.restored_topic` names.
That topic may already hold ``sensor_msgs/Image`` messages when it is the latent's own
source camera: the frames ``compress --keep-bad-frames`` kept unchanged; they are copied
and land beside the restored images, in log-time order.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..codec import image_conversions as conv
from ..codec.api import ParaHydraCodec
from ..codec.container import CodedView
from ..codec.errors import PayloadError
from ..codec.latent_message import parse_latent
from ..sync import SyncSettings, group_by_time
from . import messages as m
from .errors import FrameError, TopicError
from .reading import BagMessage, InputBag, disk_size, open_bag
from .summary import Progress, Summary
from .topics import SUFFIX, restored_topic
from .writing import OutputBag, atomic_output, check_output, raise_if_stopped, stderr_notice


@dataclass(frozen=True)
class _Latent:
    msg: BagMessage
    latent: Any  # the deserialized CompressedLatent
    view: CodedView  # its payload, parsed and checked once


def decompress_bag(source: Path | str, output: Path | str, codec: ParaHydraCodec, *,
                   sync: SyncSettings = SyncSettings(), storage: str | None = None, force: bool = False,
                   joint: bool = True, progress: bool = False,
                   notice: Callable[[str], None] = stderr_notice, stop: threading.Event | None = None) -> Summary:
    """Write ``output``: ``source`` with every latent topic decoded back to images (``notice``,
    ``stop``: as :func:`~parahydra_ros.bagtools.compress.compress_bag`'s)."""
    source, output = Path(source), Path(output)
    check_output(source, output, force)
    start = time.perf_counter()
    with open_bag(source) as bag:
        targets = _targets(bag)
        factory = m.MessageFactory(m.make_typestore(bag.definition(m.LATENT)))
        summary = Summary("decompress", source, output)
        storage = storage or ("mcap" if bag.storage == "rosbag1" else bag.storage)

        def note(line: str) -> None:
            summary.notes.append(line)
            notice(line)

        with atomic_output(source, output, force, note) as target, \
                OutputBag(target, storage, factory.typestore) as out:
            for key, value in bag.custom_data.items():
                out.set_custom_data(key, value)
            routes = {c.id: out.add_connection(targets[c.topic], m.IMAGE, like=c) if c.topic in targets
                      else out.copy_connection(c) for c in bag.connections}
            latents = list(targets)
            read: Counter[str] = Counter()
            with Progress(sum(bag.topics[t].msgcount for t in latents), progress, "decompress") as bar:
                frames = _read(bag, out, routes, factory, codec, latents, summary, read, stop)
                for group in group_by_time(frames, len(latents), sync):
                    summary.groups += 1
                    summary.partial_groups += not group.complete
                    _decode(bag, out, routes, factory, codec, group.items, joint, targets, summary, bar)
            if summary.frames != sum(read.values()):  # grouping loses nothing; never write a bag that did
                raise AssertionError(f"{summary.frames} images written for {sum(read.values())} latent messages")
            summary.set_compressed_sizes(out.compressed_sizes())
        summary.seconds = time.perf_counter() - start
        summary.disk_in, summary.disk_out = disk_size(source), disk_size(output)
    return summary


def _targets(bag: InputBag) -> dict[str, str]:
    """Latent topic → the image topic it restores (``TopicError`` if none, or on a name clash)."""
    topics = bag.topics
    latents = [t for t, info in topics.items() if info.msgtype == m.LATENT]
    if not latents:
        raise TopicError(f"{bag.path}: no {m.LATENT} topic to decompress")
    others = set(topics) - set(latents)
    targets = {t: restored_topic(t, others) for t in latents}
    for latent, image in targets.items():
        kept = (latent.endswith(SUFFIX) and image == latent[: -len(SUFFIX)] and image in topics
                and topics[image].msgtype == m.IMAGE)  # its camera's frames kept by --keep-bad-frames
        if image in others and not kept:
            raise TopicError(f"{bag.path}: {latent} restores {image}, which is already a topic of the bag")
        clash = [t for t in latents if t != latent and targets[t] == image]
        if clash:
            raise TopicError(f"{bag.path}: {latent} and {clash[0]} would both restore {image}")
    return targets


def _read(bag: InputBag, out: OutputBag, routes: dict, factory: m.MessageFactory, codec: ParaHydraCodec,
          latents: list[str], summary: Summary, read: Counter[str],
          stop: threading.Event | None) -> Iterator[tuple[int, int, _Latent]]:
    """Copy every other message in log-time order; yield the latent frames for grouping."""
    slot = {topic: i for i, topic in enumerate(latents)}
    identity = codec.identity
    for msg in bag.messages():
        raise_if_stopped(stop)
        msgtype = msg.connection.msgtype
        if msg.topic not in slot:
            out.write(routes[msg.connection.id], msg.log_time, msg.data)
            summary.topic(msg.topic, msgtype, msg.topic, msgtype).add(len(msg.data), len(msg.data))
            continue

        def fail(reason: str, msg=msg) -> FrameError:
            return FrameError(bag.path, msg.topic, msg.topic_index, msg.index, reason)

        try:
            latent = factory.deserialize(msg.data, m.LATENT)
        except Exception as error:  # rosbags raises what the bytes provoke
            raise fail(f"cannot deserialize the {m.LATENT}: {error}") from error
        try:
            view = parse_latent(latent)
        except PayloadError as error:
            raise fail(f"cannot decode: {error.reason}: {error}") from error
        h = view.header
        if (h.model_name, h.model_hash) != (identity.name, identity.hash):
            raise fail(f"coded by model {h.model_name} ({h.model_hash}) but the decoder holds "
                       f"{identity.name} ({identity.hash}): pass that model with --model "
                       "(`parahydra bag info` lists the models of a bag)")
        read[msg.topic] += 1
        yield slot[msg.topic], m.stamp_ns(latent.header), _Latent(msg, latent, view)


def _decode(bag: InputBag, out: OutputBag, routes: dict, factory: m.MessageFactory, codec: ParaHydraCodec,
            items: tuple[_Latent | None, ...], joint: bool, targets: dict[str, str], summary: Summary,
            bar: Progress) -> None:
    frames = [item for item in items if item is not None]
    decoded = codec.decode_group([frame.view for frame in frames], joint)
    for row, frame in enumerate(frames):
        msg, latent = frame.msg, frame.latent

        def fail(reason: str, msg=msg) -> FrameError:
            return FrameError(bag.path, msg.topic, msg.topic_index, msg.index, reason)

        if row in decoded.errors:
            error = decoded.errors[row]
            raise fail(f"cannot decode: {error.reason}: {error}")
        try:
            image = factory.image(latent.header, decoded.images[row], latent.encoding)
        except conv.UnsupportedEncoding as error:
            raise fail(str(error)) from error
        data = factory.serialize(image, m.IMAGE)
        out.write(routes[msg.connection.id], msg.log_time, data)
        summary.topic(msg.topic, m.LATENT, targets[msg.topic], m.IMAGE).add(len(msg.data), len(data))
        summary.frames += 1
        bar.frame(len(msg.data), len(data))

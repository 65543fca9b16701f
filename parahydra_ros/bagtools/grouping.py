"""Group the camera frames of one instant, as the decoder node does, and decode a group jointly.

Grouping is ``parahydra_ros.sync.group_by_time``: the decoder node's approximate-time
policy (same ``slop`` and ``queue_size`` defaults) plus partial groups, with the
bag's stream of header stamps as the clock. Every frame lands in exactly one
group: a frame with no partner within the slop forms a group of its own and is
decoded alone. A camera that repeats a header stamp would have its repeated
frame merged into the first by the policy (one frame per input and stamp), so a
repeated stamp is fed 1 ns later; the written message keeps its own header.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..codec import container
from ..codec.api import ParaHydraCodec
from ..codec.errors import PayloadError
from ..ros.parameters import DECODER
from ..sync import Group, group_by_time

T = TypeVar("T")

_REMEMBERED_STAMPS = 8192  # per camera, for the repeated-stamp check


@dataclass(frozen=True)
class SyncSettings:
    """Approximate-time grouping: ``slop`` s between stamps of a group, ``queue_size`` frames
    waiting per camera, ``deadline`` s of stream time before a frame is grouped partially."""

    slop: float = DECODER["slop"].default
    queue_size: int = DECODER["queue_size"].default
    deadline: float = 1.0


def grouped(events: Iterable[tuple[int, int, T]], num_inputs: int, sync: SyncSettings) -> Iterator[Group[T]]:
    """Groups of ``(camera index, header stamp ns, item)`` events read in log-time order."""
    return group_by_time(_unique_stamps(events, num_inputs), num_inputs, sync.slop, sync.queue_size, sync.deadline)


def _unique_stamps(events: Iterable[tuple[int, int, T]], num_inputs: int) -> Iterator[tuple[int, int, T]]:
    recent: list[dict[int, None]] = [{} for _ in range(num_inputs)]
    for index, stamp, item in events:
        seen = recent[index]
        while stamp in seen:
            stamp += 1
        seen[stamp] = None
        if len(seen) > _REMEMBERED_STAMPS:
            del seen[next(iter(seen))]
        yield index, stamp, item


def decode_views(codec: ParaHydraCodec, payloads: Mapping[int, bytes],
                 joint: bool = True) -> tuple[dict[int, np.ndarray], dict[int, PayloadError]]:
    """Decode the views of one group: jointly per padded size (views of other sizes cannot be fused).

    Returns the images and the errors, both keyed like ``payloads``.
    """
    images: dict[int, np.ndarray] = {}
    errors: dict[int, PayloadError] = {}
    by_size: dict[tuple[int, int], list[int]] = {}
    for key, payload in payloads.items():
        try:
            by_size.setdefault(container.read_header(payload).padded_hw, []).append(key)
        except PayloadError as error:
            errors[key] = error
    for keys in by_size.values():
        result = codec.decode_group([payloads[k] for k in keys], joint=joint)
        images.update({keys[i]: image for i, image in result.images.items()})
        errors.update({keys[i]: error for i, error in result.errors.items()})
    return images, errors

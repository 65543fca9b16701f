"""Group the frames of N cameras read in time order (e.g. from a rosbag), losing none.

The decoder node's ``CameraGrouper`` with stream time as the clock: the
approximate-time policy fires complete groups, and every frame no complete group
took is given out in a partial group once the stream has moved more than
``deadline`` seconds past the frame's arrival, and all that is left at the end. So
every frame appears in exactly one group.

A complete group holds, per input, the stamp the policy matched (spread below
``slop``). A partial group holds the stamps of frames that found no complete
set: the oldest such frame and, per other input, its closest leftover frame
that keeps the spread below ``slop``; ``None`` for the other inputs.

A camera that repeats a header stamp would have its repeated frame merged into the
first (one frame per input and stamp, as in message_filters), so a repeated stamp is
fed 1 ns later; the item itself is unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TypeVar

from parahydra_ros.sync.approximate_time import Group
from parahydra_ros.sync.grouping import CameraGrouper, SyncSettings

T = TypeVar("T")

# Waiting frames per input; the deadline, checked before every frame, keeps the
# real number far below this (it is only reached above 4096 frames per deadline).
_OFFLINE_CAPACITY = 4096
_REMEMBERED_STAMPS = 8192  # per input, for the repeated-stamp check


def group_by_time(events: Iterable[tuple[int, int, T]], num_inputs: int,
                  settings: SyncSettings = SyncSettings()) -> Iterator[Group[T]]:
    """Yield groups of ``(input index, stamp in ns, item)`` events, complete ones and partial ones.

    ``events`` come roughly in time order; the stream's clock is the newest stamp
    seen so far. Groups are yielded as they are decided, which is roughly, not
    exactly, stamp order.
    """
    grouper: CameraGrouper[T] = CameraGrouper(
        num_inputs, settings, capacity=max(_OFFLINE_CAPACITY, 2 * settings.queue_size))
    clock = -math.inf
    for index, stamp, item in _unique_stamps(events, num_inputs):
        clock = max(clock, stamp / 1e9)
        yield from grouper.poll(clock).groups
        fired = grouper.add(index, stamp, clock, item)
        if fired is not None:
            yield fired
    yield from grouper.poll(math.inf).groups


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

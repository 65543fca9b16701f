"""Group the frames of N cameras read in time order (e.g. from a rosbag), losing none.

The same two steps as the decoder node, with stream time as the clock: the
approximate-time policy fires complete groups, and a ``PartialGroupCollector``
gives out every frame no complete group took once the stream has moved more
than ``deadline`` seconds past the frame's arrival, and all that is left at the
end. So every frame appears in exactly one group.

A complete group holds, per input, the stamp the policy matched (spread below
``slop``). A partial group holds the stamps of frames that found no complete
set: the oldest such frame and, per other input, its closest leftover frame
that keeps the spread below ``slop``; ``None`` for the other inputs.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TypeVar

from parahydra_ros.sync.approximate_time import ApproximateTimePolicy, Group
from parahydra_ros.sync.stragglers import PartialGroupCollector

T = TypeVar("T")

# Waiting frames per input; the deadline, checked before every frame, keeps the
# real number far below this (it is only reached above 4096 frames per deadline).
_OFFLINE_CAPACITY = 4096


def group_by_time(
    events: Iterable[tuple[int, int, T]],
    num_inputs: int,
    slop: float,
    queue_size: int,
    deadline: float = 1.0,
) -> Iterator[Group[T]]:
    """Yield groups of ``(input index, stamp in ns, item)`` events, complete ones and partial ones.

    ``events`` come roughly in time order; the stream's clock is the newest stamp
    seen so far. Groups are yielded as they are decided, which is roughly, not
    exactly, stamp order. A repeated (input, stamp) pair counts as one frame: a
    later item replaces a waiting one and is ignored once that one was delivered.
    """
    policy: ApproximateTimePolicy[T] = ApproximateTimePolicy(num_inputs, queue_size, slop)
    leftovers: PartialGroupCollector[T] = PartialGroupCollector(
        num_inputs, slop, deadline, capacity=max(_OFFLINE_CAPACITY, 2 * queue_size)
    )
    clock = -math.inf
    for index, stamp, item in events:
        clock = max(clock, stamp / 1e9)
        yield from leftovers.poll(clock).groups
        leftovers.add(index, stamp, clock, item)
        fired = policy.add(index, stamp, item)
        if fired is not None:
            fresh = leftovers.complete(fired)
            if fresh is not None:
                yield fresh
    yield from leftovers.poll(math.inf).groups

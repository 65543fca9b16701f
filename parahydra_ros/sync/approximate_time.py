"""The approximate-time policy of ``message_filters.ApproximateTimeSynchronizer``, without ROS.

Same semantics as the Python ``message_filters`` 6.x implementation, so that a
node behaves the same with or without ``message_filters`` installed:

* every input keeps a dict ``stamp -> item``; a new item with a stamp already
  queued on that input replaces it, and while an input holds more than
  ``queue_size`` items the one with the oldest stamp is discarded (an item older
  than everything in a full queue is thus discarded at once and never fires);
* on each arrival only combinations holding the new item are tried: every other
  input's candidates are its stamps at most ``slop`` away from the new stamp,
  closest first (ties in arrival order); if an input has none, nothing fires;
* combinations are tried in ``itertools.product`` order and the first whose
  spread ``max - min`` is strictly below ``slop`` fires (so ``slop=0`` never
  fires, as in message_filters);
* only the fired items leave the queues; older unfired items stay until
  trimmed. At most one group fires per arrival.

Stamps are integer nanoseconds (``rclpy.time.Time.nanoseconds``); ``slop`` is in
seconds, as in message_filters, and is rounded to nanoseconds once.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Group(Generic[T]):
    """One set of items, one slot per input: its stamp (ns) and item, or ``None`` where absent."""

    stamps: tuple[int | None, ...]
    items: tuple[T | None, ...]

    @property
    def complete(self) -> bool:
        """Whether every input has an item in this group."""
        return all(stamp is not None for stamp in self.stamps)

    @property
    def members(self) -> tuple[int, ...]:
        """Indices of the inputs that have an item in this group."""
        return tuple(i for i, stamp in enumerate(self.stamps) if stamp is not None)


def seconds_to_ns(seconds: float) -> int:
    """Convert a duration in seconds to integer nanoseconds, rounded to the nearest one."""
    return round(seconds * 1_000_000_000)


class ApproximateTimePolicy(Generic[T]):
    """Thread-safe approximate-time matching of ``num_inputs`` stamped streams.

    ``add`` returns the group it fired; it runs no user code, so the caller can
    hand the group to another thread without holding any lock.
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float) -> None:
        if num_inputs < 1:
            raise ValueError(f"num_inputs must be at least 1, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be non-negative, got {slop} s")
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self.slop_ns = seconds_to_ns(slop)
        self._queues: list[dict[int, T]] = [{} for _ in range(num_inputs)]
        self._lock = threading.Lock()

    def add(self, index: int, stamp: int, item: T) -> Group[T] | None:
        """Queue ``item`` of input ``index`` stamped ``stamp`` (ns); return the group it completes, if any."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} out of range for {self.num_inputs} inputs")
        with self._lock:
            queue = self._queues[index]
            queue[stamp] = item
            while len(queue) > self.queue_size:
                del queue[min(queue)]
            if stamp not in queue:  # older than everything in a full queue
                return None
            candidates = []
            for other, other_queue in enumerate(self._queues):
                if other == index:
                    candidates.append([stamp])
                    continue
                near = [s for s in other_queue if abs(s - stamp) <= self.slop_ns]
                if not near:
                    return None
                near.sort(key=lambda s: abs(s - stamp))
                candidates.append(near)
            for stamps in itertools.product(*candidates):
                if max(stamps) - min(stamps) < self.slop_ns:
                    items = tuple(q.pop(s) for q, s in zip(self._queues, stamps))
                    return Group(stamps=stamps, items=items)
            return None

"""The decoder's grouping of N camera streams, one object for the node and the bag tool.

A ``CameraGrouper`` is the two steps the decoder takes for every frame, with its
settings (``SyncSettings``):

1. the approximate-time policy (``ApproximateTimePolicy``, message_filters'
   semantics) fires complete groups: one frame per camera, stamps within ``slop``;
2. a ``PartialGroupCollector`` sees every frame too, gives out as a partial group what
   no complete group took within ``deadline`` seconds, and reports cameras that go
   missing and come back.

The decoder node feeds it with ``time.monotonic()`` as the clock; ``group_by_time``
(``sync.offline``, used by ``parahydra bag`` and the bag datasets) with the stream's
own stamps. So a bag is grouped by the very object the node groups with.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from parahydra_ros.sync.approximate_time import ApproximateTimePolicy, Group
from parahydra_ros.sync.stragglers import PartialGroupCollector, PollResult

T = TypeVar("T")


@dataclass(frozen=True)
class SyncSettings:
    """How frames are grouped: ``slop`` s at most between the stamps of a group, ``queue_size``
    frames per camera waiting for a match, ``deadline`` s before a frame is given out partially.

    The defaults of ``slop`` and ``queue_size`` are the decoder node's parameter defaults.
    ``deadline`` is the bag tool's (seconds of bag time); the node's ``partial_deadline``
    parameter (wall-clock seconds) has its own default in ``pipeline.parameters``.
    """

    slop: float = 0.02
    queue_size: int = 10
    deadline: float = 1.0


class CameraGrouper(Generic[T]):
    """Complete groups as they fire, partial groups past the deadline, missing cameras; thread-safe.

    ``capacity``: waiting frames kept per camera by the collector (see
    ``PartialGroupCollector``); keep it above ``queue_size`` and the frames a camera
    sends within ``deadline``.
    """

    def __init__(self, num_inputs: int, settings: SyncSettings, capacity: int) -> None:
        self.num_inputs = num_inputs
        self.settings = settings
        self._policy: ApproximateTimePolicy[T] = ApproximateTimePolicy(
            num_inputs, settings.queue_size, settings.slop)
        self._collector: PartialGroupCollector[T] = PartialGroupCollector(
            num_inputs, settings.slop, settings.deadline, capacity=capacity)
        self._lock = threading.Lock()

    def add(self, index: int, stamp: int, arrival: float, item: T) -> Group[T] | None:
        """Camera ``index`` delivered ``item`` stamped ``stamp`` (ns) at ``arrival`` (s): the
        complete group it completes, less any member already given out partially, or ``None``."""
        with self._lock:
            self._collector.add(index, stamp, arrival, item)
            fired = self._policy.add(index, stamp, item)
            return None if fired is None else self._collector.complete(fired)

    def poll(self, now: float) -> PollResult[T]:
        """Partial groups of the frames that waited past the deadline, and missing-camera events."""
        with self._lock:
            return self._collector.poll(now)

    @property
    def dropped(self) -> int:
        """Frames the collector dropped (over capacity, or a repeated stamp)."""
        return self._collector.dropped

    @property
    def missing(self) -> frozenset[int]:
        """Cameras currently reported missing."""
        return self._collector.missing

    @property
    def all_silent(self) -> bool:
        """Whether every camera is silent (reported as one event, not as N missing cameras)."""
        return self._collector.all_silent

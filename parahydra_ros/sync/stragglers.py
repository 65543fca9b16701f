"""Partial groups, so that one stalled camera does not stall the others.

An approximate-time synchronizer fires complete groups only: when one input
stops, every other input's messages wait until they are trimmed. A
``PartialGroupCollector`` sees every message as it arrives and is told which
ones the synchronizer fired. Those it forgets; any other message that has waited
longer than ``deadline`` is given out by ``poll`` in a partial group. It also
says when an input goes missing and when it comes back, once each, so the node
logs a missing camera once (``MissingInputs``).

A partial group is built around the oldest expired message (its *anchor*): for
every other input, the waiting message closest in stamp to the anchor joins if
the group's stamp spread stays strictly below ``slop`` (as for a complete group),
whether that message has expired yet or not. Each input appears at most once.
A partial group may happen to hold every input (a set the synchronizer missed,
e.g. one it had trimmed); ``Group.complete`` tells.

Every (input, stamp) is delivered at most once: when the synchronizer fires a
group some of whose members already went out in a partial group (the others
arrived late), ``complete`` returns only the members still to deliver; a message
added after its group was completed (callbacks may run in either order) is ignored.

Stamps are integer nanoseconds; arrival and poll times are seconds on one
monotonic clock (``time.monotonic()`` online, stream time offline).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from parahydra_ros.sync.approximate_time import Group, seconds_to_ns

T = TypeVar("T")


@dataclass(frozen=True)
class PollResult(Generic[T]):
    """What ``PartialGroupCollector.poll`` found: partial groups and input transitions."""

    groups: tuple[Group[T], ...]
    went_missing: tuple[int, ...] = ()  # inputs silent for longer than the deadline while others deliver
    came_back: tuple[int, ...] = ()  # inputs reported missing that have delivered again
    all_fell_silent: bool = False  # every input just fell silent: one event, not N missing inputs


class MissingInputs:
    """Which inputs to report missing, and when back; times in seconds on one clock. Not thread-safe.

    An input is missing when it has sent nothing for longer than ``deadline`` while
    another input delivers. Before the first arrival nothing is reported (no clock
    yet). When every input is silent (the robot paused, a replay ended) that is one
    event, not N missing inputs; and when they resume, the clock of the others
    restarts at the first one's arrival, so inputs that come back a little later are
    not reported. A reported input is back as soon as it delivers again.

    Every input falling silent is reported once per *episode*: cameras slower than
    the deadline fall silent between every two frames, and that is one episode until
    they have delivered without a pause for longer than twice the deadline.
    """

    def __init__(self, num_inputs: int, deadline: float) -> None:
        self.deadline = deadline
        self._last: list[float | None] = [None] * num_inputs
        self._start: float | None = None
        self._resumed: float | None = None
        self.all_silent = False
        self._silent_episode = False  # all-silent reported, and no steady delivery since
        self.reported: dict[int, float] = {}  # input -> when it was reported missing

    def seen(self, index: int, now: float) -> None:
        """Input ``index`` delivered at ``now``."""
        self._last[index] = now
        if self._start is None:
            self._start = now

    def poll(self, now: float) -> tuple[list[int], list[int], bool]:
        """(inputs gone missing, inputs back, whether every input just fell silent)."""
        if self._start is None:
            return [], [], False
        newest = max(t for t in self._last if t is not None)
        if now - newest > self.deadline:
            started = not self.all_silent and not self._silent_episode
            self.all_silent = True
            self._silent_episode |= started
            return [], [], started
        if self.all_silent:
            self.all_silent, self._resumed = False, newest
        if self._silent_episode and self._resumed is not None and now - self._resumed > 2 * self.deadline:
            self._silent_episode = False  # delivering steadily again: the episode is over
        back = sorted(i for i, when in self.reported.items() if (self._last[i] or -1.0) > when)
        for index in back:
            del self.reported[index]
        went = []
        for index, last in enumerate(self._last):
            since = max(t for t in (last, self._start, self._resumed) if t is not None)
            if index not in self.reported and now - since > self.deadline:
                self.reported[index] = now
                went.append(index)
        return went, back, False


class PartialGroupCollector(Generic[T]):
    """Gives out, as partial groups, messages no complete group took within ``deadline`` seconds.

    Thread-safe. Memory is bounded: at most ``capacity`` waiting messages per
    input (beyond it the oldest stamp is dropped and counted in ``dropped``) and
    as many remembered stamps of delivered messages; keep ``capacity`` above the
    synchronizer's ``queue_size`` and above the messages one input sends within
    ``deadline``. Missing inputs are tracked by a ``MissingInputs`` with the same deadline.
    """

    def __init__(self, num_inputs: int, slop: float, deadline: float, capacity: int = 256) -> None:
        if num_inputs < 1:
            raise ValueError(f"num_inputs must be at least 1, got {num_inputs}")
        if deadline <= 0:
            raise ValueError(f"deadline must be positive, got {deadline} s")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.num_inputs = num_inputs
        self.slop_ns = seconds_to_ns(slop)
        self.deadline = deadline
        self.capacity = capacity
        self._waiting: list[dict[int, tuple[float, T]]] = [{} for _ in range(num_inputs)]
        self._delivered: list[dict[int, None]] = [{} for _ in range(num_inputs)]  # ordered set
        self._inputs = MissingInputs(num_inputs, deadline)
        self._dropped = 0
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Messages dropped so far: over ``capacity``, or replaced by one with the same input and stamp."""
        with self._lock:
            return self._dropped

    @property
    def missing(self) -> frozenset[int]:
        """Inputs currently reported missing."""
        with self._lock:
            return frozenset(self._inputs.reported)

    @property
    def all_silent(self) -> bool:
        """Whether every input is silent now (as of the last ``poll``)."""
        with self._lock:
            return self._inputs.all_silent

    def add(self, index: int, stamp: int, arrival: float, item: T) -> None:
        """Record that input ``index`` delivered ``item`` stamped ``stamp`` (ns) at time ``arrival`` (s)."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} out of range for {self.num_inputs} inputs")
        with self._lock:
            self._inputs.seen(index, arrival)
            if stamp in self._delivered[index]:
                return
            waiting = self._waiting[index]
            if stamp in waiting:
                self._dropped += 1
            waiting[stamp] = (arrival, item)
            while len(waiting) > self.capacity:
                del waiting[min(waiting)]
                self._dropped += 1

    def complete(self, group: Group[T]) -> Group[T] | None:
        """Consume a group the synchronizer fired; return what of it is still to deliver.

        That is ``group`` itself, unless some members already went out in a
        partial group: then a partial group of the others, or ``None``.
        """
        with self._lock:
            stamps: list[int | None] = []
            items: list[T | None] = []
            for index, (stamp, item) in enumerate(zip(group.stamps, group.items)):
                if stamp is None or stamp in self._delivered[index]:
                    stamps.append(None)
                    items.append(None)
                    continue
                self._waiting[index].pop(stamp, None)
                self._remember_delivered(index, stamp)
                stamps.append(stamp)
                items.append(item)
        if stamps == list(group.stamps):
            return group
        if all(stamp is None for stamp in stamps):
            return None
        return Group(stamps=tuple(stamps), items=tuple(items))

    def poll(self, now: float) -> PollResult[T]:
        """Give out the messages that waited longer than the deadline, and input transitions."""
        with self._lock:
            expired = sorted(
                (stamp, index)
                for index, waiting in enumerate(self._waiting)
                for stamp, (arrival, _) in waiting.items()
                if now - arrival > self.deadline
            )
            groups = []
            for stamp, index in expired:
                if stamp in self._waiting[index]:  # not taken by an earlier group
                    groups.append(self._take_group(index, stamp))
            went_missing, came_back, all_fell_silent = self._inputs.poll(now)
        return PollResult(groups=tuple(groups), went_missing=tuple(went_missing), came_back=tuple(came_back),
                          all_fell_silent=all_fell_silent)

    def _take_group(self, anchor_index: int, anchor_stamp: int) -> Group[T]:
        """Remove and return the partial group around one expired message (lock held)."""
        members = {anchor_index: anchor_stamp}
        for index, waiting in enumerate(self._waiting):
            if index == anchor_index:
                continue
            for stamp in sorted(waiting, key=lambda s: abs(s - anchor_stamp)):
                if max(*members.values(), stamp) - min(*members.values(), stamp) < self.slop_ns:
                    members[index] = stamp
                    break
        stamps: list[int | None] = [None] * self.num_inputs
        items: list[T | None] = [None] * self.num_inputs
        for index, stamp in members.items():
            _, items[index] = self._waiting[index].pop(stamp)
            stamps[index] = stamp
            self._remember_delivered(index, stamp)
        return Group(stamps=tuple(stamps), items=tuple(items))

    def _remember_delivered(self, index: int, stamp: int) -> None:
        """Record a delivered stamp, forgetting the oldest beyond ``capacity`` (lock held)."""
        delivered = self._delivered[index]
        delivered[stamp] = None
        while len(delivered) > self.capacity:
            del delivered[next(iter(delivered))]

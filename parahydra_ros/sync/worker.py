"""Worker threads fed by a bounded queue that drops the oldest item when full.

Both nodes do their neural work here, off the ROS callbacks: a subscription (or
message_filters, which calls back under its lock) only hands the item over and
returns. When the network is slower than the cameras the queue stays bounded and
the frames that are dropped are the stalest ones, counted in ``dropped``. Several
threads may handle items at once (the encoder codes two frames at a time on a
2-core computer); their results are still released in the order the items were taken.
ROS-free.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class DropOldestWorker(Generic[T]):
    """Runs ``handler(item)`` on ``threads`` threads for each submitted item; at most
    ``maxsize`` wait.

    ``on_drop(item)`` (optional) is called, in the submitting thread, for every item
    pushed out of a full queue. ``on_result(item, result)`` (optional) receives what
    ``handler`` returned, in the order the items were taken from the queue, whatever
    thread finished first. An exception in ``handler`` goes to ``on_error`` (in that
    order too; default: re-raised into the thread, which then ends), so a bad item
    does not silently stop the worker when ``on_error`` is given.
    """

    def __init__(self, handler: Callable[[T], R], maxsize: int = 1, name: str = "worker",
                 on_drop: Callable[[T], None] | None = None,
                 on_error: Callable[[T, BaseException], None] | None = None,
                 on_result: Callable[[T, R], None] | None = None, threads: int = 1) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.maxsize = maxsize
        self._handler = handler
        self._on_drop = on_drop
        self._on_error = on_error
        self._on_result = on_result
        self._queue: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = 0
        self._dropped = 0
        self._done = 0
        self._taken = 0  # sequence number of the next item taken from the queue
        self._finished: dict[int, tuple[T, Any, BaseException | None]] = {}
        self._release_lock = threading.Lock()
        self._next_release = 0
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}" if threads > 1 else name,
                                          daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    @property
    def dropped(self) -> int:
        """Items pushed out of the full queue so far."""
        with self._cond:
            return self._dropped

    @property
    def done(self) -> int:
        """Items handled so far."""
        with self._cond:
            return self._done

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken by a thread."""
        with self._cond:
            return len(self._queue)

    @property
    def pending(self) -> int:
        """Items waiting, plus the one being handled."""
        with self._cond:
            return len(self._queue) + self._busy

    def submit(self, item: T) -> bool:
        """Queue ``item``; return False if that pushed an older one out (or the worker stopped)."""
        dropped = None
        with self._cond:
            if self._stopping:
                return False
            if len(self._queue) >= self.maxsize:
                dropped = self._queue.popleft()
                self._dropped += 1
            self._queue.append(item)
            self._cond.notify()
        if dropped is not None and self._on_drop is not None:
            self._on_drop(dropped)
        return dropped is None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running; return whether that happened in time."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        """Drop what waits, let the running items finish, end the threads; return whether they ended."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        for thread in self._threads:
            if threading.current_thread() is not thread:
                thread.join(timeout)
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    return
                item = self._queue.popleft()
                sequence = self._taken
                self._taken += 1
                self._busy += 1
            try:
                result, error = self._handler(item), None
            except BaseException as raised:  # noqa: BLE001 - reported in order below
                result, error = None, raised
            try:
                self._release(sequence, item, result, error)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._done += 1
                    self._cond.notify_all()

    def _release(self, sequence: int, item: T, result: Any, error: BaseException | None) -> None:
        """Hand out every finished item whose predecessors are all out, in sequence order."""
        with self._release_lock:
            self._finished[sequence] = (item, result, error)
            while self._next_release in self._finished:
                item, result, error = self._finished.pop(self._next_release)
                self._next_release += 1
                if error is None:
                    if self._on_result is not None:
                        self._on_result(item, result)
                elif self._on_error is None:
                    raise error
                else:
                    self._on_error(item, error)

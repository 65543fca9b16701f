"""A worker thread fed by a bounded queue that drops the oldest item when full.

Both nodes do their neural work here, off the ROS callbacks: a subscription (or
message_filters, which calls back under its lock) only hands the item over and
returns. When the network is slower than the cameras the queue stays bounded and
the frames that are dropped are the stalest ones, counted in ``dropped``.
ROS-free.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestWorker(Generic[T]):
    """Runs ``handler(item)`` on one thread for each submitted item; at most ``maxsize`` wait.

    ``on_drop(item)`` (optional) is called, in the submitting thread, for every item
    pushed out of a full queue. An exception in ``handler`` goes to ``on_error``
    (default: re-raised into the thread, which then ends), so a bad item does not
    silently stop the worker when ``on_error`` is given.
    """

    def __init__(self, handler: Callable[[T], None], maxsize: int = 1, name: str = "worker",
                 on_drop: Callable[[T], None] | None = None,
                 on_error: Callable[[T, BaseException], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._handler = handler
        self._on_drop = on_drop
        self._on_error = on_error
        self._queue: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self._dropped = 0
        self._done = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

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
    def pending(self) -> int:
        """Items waiting, plus the one being handled."""
        with self._cond:
            return len(self._queue) + int(self._busy)

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
        """Drop what waits, let the running item finish, end the thread; return whether it ended."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    return
                item = self._queue.popleft()
                self._busy = True
            try:
                self._handler(item)
            except BaseException as error:  # noqa: BLE001 - reported, the worker goes on
                if self._on_error is None:
                    raise
                self._on_error(item, error)
            finally:
                with self._cond:
                    self._busy = False
                    self._done += 1
                    self._cond.notify_all()

"""What the nodes count and time, and how it is published: one implementation for both nodes.

``NodeStats`` (ROS-free, thread-safe) holds counters, latency samples, and the sizes
of coded frames; ``snapshot()`` is a plain dict. ``diagnostic_status`` turns a
snapshot into a ``diagnostic_msgs/DiagnosticStatus`` that the nodes publish on
``/diagnostics`` (the topic ``diagnostic_aggregator`` and ``rqt_runtime_monitor``
read), one status per node named by its fully qualified name. Key-values:

* every counter by its name (``frames_in``, ``frames_out``, ``frames_dropped_*``,
  ``groups_complete``, ``groups_partial``, ``views_error_<Reason>``, …), cumulative;
* for every timed quantity ``X`` (``encode_ms``, ``decode_ms``, ``latency_ms``):
  ``X_p50``, ``X_p90``, ``X_p99``, ``X_max``, ``X_mean`` over the last ``window``
  samples and ``X_count`` (all samples so far);
* ``bits_per_pixel`` (coded bits over coded pixels) and ``compression_ratio``
  (raw image bytes over coded bytes) over the last ``window`` frames, and
  ``bits_per_pixel_total`` / ``compression_ratio_total`` since start;
* text fields a node sets (``missing_cameras``, ``model``, …).

``parse_status`` reads the key-values back into numbers (for benchmarks and tests).
"""
from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 99)


class NodeStats:
    """Counters, latency windows and coded sizes of one node; safe to update from any thread."""

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._counters: dict[str, int] = collections.defaultdict(int)
        self._samples: dict[str, collections.deque[float]] = {}
        self._sample_counts: dict[str, int] = collections.defaultdict(int)
        self._sizes: collections.deque[tuple[int, int, int]] = collections.deque(maxlen=window)
        self._totals = [0, 0, 0]  # coded bytes, pixels, raw bytes
        self._info: dict[str, str] = {}

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def observe(self, name: str, value: float) -> None:
        """Record one sample (e.g. a latency in ms) of ``name``."""
        with self._lock:
            samples = self._samples.get(name)
            if samples is None:
                samples = self._samples[name] = collections.deque(maxlen=self.window)
            samples.append(float(value))
            self._sample_counts[name] += 1

    def coded(self, coded_bytes: int, pixels: int, raw_bytes: int) -> None:
        """Record one coded frame: its payload size, its pixel count, its raw image size."""
        with self._lock:
            self._sizes.append((coded_bytes, pixels, raw_bytes))
            self._totals[0] += coded_bytes
            self._totals[1] += pixels
            self._totals[2] += raw_bytes

    def set_info(self, name: str, value: str) -> None:
        with self._lock:
            self._info[name] = value

    def snapshot(self) -> dict[str, Any]:
        """Everything as a flat dict of numbers and strings (see the module docstring for the keys)."""
        with self._lock:
            out: dict[str, Any] = dict(sorted(self._counters.items()))
            for name, samples in sorted(self._samples.items()):
                out.update(summarize(name, samples))
                out[f"{name}_count"] = self._sample_counts[name]
            coded, pixels, raw = (sum(column) for column in zip(*self._sizes)) if self._sizes else (0, 0, 0)
            out["bits_per_pixel"] = 8 * coded / pixels if pixels else math.nan
            out["compression_ratio"] = raw / coded if coded else math.nan
            out["bits_per_pixel_total"] = 8 * self._totals[0] / self._totals[1] if self._totals[1] else math.nan
            out["compression_ratio_total"] = self._totals[2] / self._totals[0] if self._totals[0] else math.nan
            out.update(self._info)
            return out


def summarize(name: str, samples: Any) -> dict[str, float]:
    """``name_p50``, ``_p90``, ``_p99``, ``_max``, ``_mean`` of ``samples`` (NaN when empty)."""
    values = np.asarray(list(samples), dtype=float)
    if values.size == 0:
        return {**{f"{name}_p{p}": math.nan for p in PERCENTILES}, f"{name}_max": math.nan,
                f"{name}_mean": math.nan}
    out = {f"{name}_p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}
    out[f"{name}_max"] = float(values.max())
    out[f"{name}_mean"] = float(values.mean())
    return out


class RateLimiter:
    """Lets one message per key through every ``period`` seconds and counts the ones held back.

    ``allow(key)`` returns ``None`` to stay silent, or the number of messages with
    that key suppressed since the last one that went through (0 the first time).
    Keys are e.g. ``(camera, reason)``, so one camera's errors never hide another's.
    """

    def __init__(self, period: float, clock=time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._last: dict[Any, float] = {}
        self._suppressed: dict[Any, int] = collections.defaultdict(int)
        self._lock = threading.Lock()

    def allow(self, key: Any) -> int | None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                self._suppressed[key] += 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)


def diagnostic_status(name: str, hardware_id: str, snapshot: Mapping[str, Any],
                      level: str = "ok", message: str = ""):
    """A ``diagnostic_msgs/DiagnosticStatus`` of a ``NodeStats.snapshot()``; ``level``: ok, warn, error."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    levels = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}
    status = DiagnosticStatus(name=name, hardware_id=hardware_id, message=message)
    status.level = levels[level]
    status.values = [KeyValue(key=key, value=_format(value)) for key, value in snapshot.items()]
    return status


def parse_status(status: Any) -> dict[str, Any]:
    """The key-values of a ``DiagnosticStatus`` as a dict, numbers parsed (``nan`` included)."""
    out: dict[str, Any] = {}
    for kv in status.values:
        try:
            number = float(kv.value)
        except ValueError:
            out[kv.key] = kv.value
            continue
        out[kv.key] = int(number) if number.is_integer() and "." not in kv.value and "e" not in kv.value else number
    return out


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)

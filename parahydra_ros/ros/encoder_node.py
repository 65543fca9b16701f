"""Encoder node: one camera's images in, ParaHydra ``CompressedLatent`` out.

    ros2 run parahydra_ros encoder_node --ros-args -r __ns:=/cam0 -r image:=/camera/color/image_raw

Topics (relative, so namespaces and remaps apply):

* subscribes ``image`` (``sensor_msgs/Image``; rgb8, bgr8, rgba8, bgra8, mono8), or
  ``image/compressed`` (``sensor_msgs/CompressedImage``, JPEG/PNG) when
  ``input_transport`` is ``compressed``; QoS ``input_qos`` (sensor data);
* publishes ``latent`` (``parahydra_ros/CompressedLatent``) with the source header;
  QoS ``output_qos`` (reliable, which serves reliable and best-effort subscribers);
* publishes ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``), see ``diagnostics.py``.

The subscription callback only admits a frame (rate limit, supported encoding) and
hands it to a worker thread that converts and encodes it; a frame arriving while
the worker is busy replaces the waiting one, so the node never queues without bound
and always encodes the newest frame. Every drop is counted by reason
(``frames_dropped_rate``, ``frames_dropped_busy``, ``frames_dropped_unsupported``,
``frames_dropped_error``). ``quality`` and ``max_rate`` can be changed at runtime.
"""
from __future__ import annotations

import array
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image

from parahydra_ros.msg import CompressedLatent

from ..codec import image_conversions as conv
from ..codec.container import FORMAT_VERSION
from ..pipeline.parameters import ENCODER
from ..sync.worker import DropOldestWorker
from .diagnostics import NodeStats, RateLimiter, diagnostic_status
from .qos import describe, qos_profile
from .runtime import (
    set_integer_range,
    NodeSetupError,
    WorkerNodeMixin,
    declare_parameters,
    format_values,
    load_codec,
    run_node,
    threads_per_worker,
    use_threads,
)

NODE_PARAMETERS = ENCODER
"""This node's parameters: name → ``ParamSpec`` (default, type, description)."""

DEFAULT_NAME = "parahydra_encoder"
TRANSPORTS = ("raw", "compressed")


@dataclass
class _Frame:
    msg: Any
    index: int


class RateGate:
    """Admits at most ``rate`` events per second on average (token bucket, burst 1.5); ``rate`` 0 admits all."""

    def __init__(self, rate: float, clock=time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = 1.0
        self._last: float | None = None

    def admit(self) -> bool:
        if self.rate <= 0:
            return True
        now = self._clock()
        if self._last is not None:
            self._tokens = min(1.5, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def camera_name_for(node: Node, configured: str) -> str:
    """``configured``, else the last component of the node's namespace, else the node's name."""
    if configured:
        return configured
    parts = [p for p in node.get_namespace().split("/") if p]
    return parts[-1] if parts else node.get_name()


class EncoderNode(WorkerNodeMixin, Node):
    """Encodes one camera's images with ParaHydra's per-view encoder (no other view needed)."""

    def __init__(self, node_name: str = DEFAULT_NAME, *, codec: Any = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, NODE_PARAMETERS)
        p = self.params
        self.camera = camera_name_for(self, p["camera_name"])
        if p["input_transport"] not in TRANSPORTS:
            raise NodeSetupError(f"input_transport {p['input_transport']!r} must be one of {TRANSPORTS}")
        try:
            input_qos, output_qos = qos_profile(p["input_qos"]), qos_profile(p["output_qos"])
        except ValueError as error:
            raise NodeSetupError(str(error)) from None
        for key in ("roi_x", "roi_y", "roi_width", "roi_height", "resize_width", "resize_height"):
            if p[key] < 0:
                raise NodeSetupError(f"{key} must not be negative, got {p[key]}")
        if p["max_rate"] < 0:
            raise NodeSetupError(f"max_rate must not be negative, got {p['max_rate']}")
        self.roi = (p["roi_x"], p["roi_y"], p["roi_width"], p["roi_height"])
        self.resize = (p["resize_width"], p["resize_height"])

        self.codec = codec if codec is not None else load_codec(p["model"], p["device"], p["threads"])
        self._worker_threads = threads_per_worker(p["threads"], p["workers"])
        self._check_quality(p["quality"])
        self.quality = p["quality"]
        set_integer_range(self, "quality", 0, self.codec.num_qualities - 1)  # shown by `ros2 param describe`
        self.gate = RateGate(p["max_rate"])

        self.stats = NodeStats()
        self.stats.set_info("camera", self.camera)
        self.stats.set_info("model", f"{self.codec.identity.name} ({self.codec.identity.hash})")
        self._errors = RateLimiter(5.0)
        self._refused: set[str] = set()
        self._refused_lock = threading.Lock()
        self._next_index = 0

        self.publisher = self.create_publisher(CompressedLatent, "latent", output_qos)
        if p["input_transport"] == "raw":
            self.subscription = self.create_subscription(Image, "image", self._on_image, input_qos)
        else:
            self.subscription = self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, input_qos)
        self.worker: DropOldestWorker[_Frame] = DropOldestWorker(
            self._encode, maxsize=1, name=f"encoder-{self.camera}", threads=p["workers"],
            on_drop=lambda _: self.stats.count("frames_dropped_busy"), on_error=self._on_worker_error,
            on_result=self._publish)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if p["diagnostics_period"] > 0:
            self.create_timer(p["diagnostics_period"], self.publish_diagnostics)
        self.get_logger().info(
            f"camera {self.camera}: {self.subscription.topic_name} ({describe(input_qos)}) → "
            f"{self.publisher.topic_name} ({describe(output_qos)}); model {self.codec.identity.name} "
            f"({self.codec.identity.hash}) on {self.codec.device}; "
            + format_values(p, ["quality", "max_rate", "workers", "roi_x", "roi_y", "roi_width", "roi_height",
                                "resize_width", "resize_height"]))

    # -- callbacks: short, the work is in the worker ---------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        index = self._next_index
        self._next_index += 1
        self.stats.count("frames_in")
        if isinstance(msg, Image) and msg.encoding not in conv.CHANNELS:
            self._refuse(msg.encoding, conv.UnsupportedEncoding(msg.encoding))
            return
        if not self.gate.admit():
            self.stats.count("frames_dropped_rate")
            return
        self.worker.submit(_Frame(msg, index))

    def _on_set_parameters(self, params: Sequence[Any]) -> SetParametersResult:
        for param in params:
            if param.name == "quality":
                try:
                    self._check_quality(param.value)
                except NodeSetupError as error:
                    return SetParametersResult(successful=False, reason=str(error))
            elif param.name == "max_rate":
                if not isinstance(param.value, (int, float)) or param.value < 0:
                    return SetParametersResult(successful=False, reason="max_rate must be a number >= 0")
        for param in params:  # all valid: apply
            if param.name == "quality" and param.value != self.quality:
                self.get_logger().info(f"quality {self.quality} → {param.value}")
                self.quality = param.value
            elif param.name == "max_rate":
                self.gate.rate = float(param.value)
        return SetParametersResult(successful=True)

    def publish_diagnostics(self) -> None:
        snapshot = self.stats.snapshot()
        snapshot["quality"] = self.quality
        snapshot["max_rate"] = self.gate.rate
        dropped = sum(v for k, v in snapshot.items() if k.startswith("frames_dropped_"))
        message = (f"{snapshot.get('frames_out', 0)} frames out, {dropped} dropped, "
                   f"{snapshot['bits_per_pixel']:.3f} bpp")
        level = "warn" if self._refused or snapshot.get("frames_dropped_error") else "ok"
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [diagnostic_status(self.get_fully_qualified_name(), self.camera, snapshot, level, message)]
        self._diagnostics.publish(msg)

    # -- the worker --------------------------------------------------------------------------
    def _encode(self, frame: _Frame) -> CompressedLatent | None:
        """Runs on a worker thread: the frame's message, or None if it was dropped."""
        msg = frame.msg
        try:
            if isinstance(msg, CompressedImage):
                pixels, encoding = conv.compressed_to_pixels(msg.format, msg.data)
            else:
                pixels, encoding = conv.msg_to_pixels(msg), msg.encoding
            pixels = conv.crop_and_resize(pixels, self.roi, self.resize)
        except conv.UnsupportedEncoding as error:
            self._refuse(error.encoding, error)
            return None
        except ValueError as error:  # malformed message, roi outside the image
            self.stats.count("frames_dropped_error")
            self._log_error(type(error).__name__, f"frame {frame.index} dropped: {error}")
            return None
        use_threads(self._worker_threads)
        quality = self.quality
        start = time.perf_counter()
        payload = self.codec.encode(pixels, quality)
        encode_ms = 1e3 * (time.perf_counter() - start)
        height, width = pixels.shape[:2]
        out = CompressedLatent(
            header=msg.header, camera=self.camera, frame_index=frame.index, height=height, width=width,
            encoding=encoding, model_name=self.codec.identity.name, model_hash=self.codec.identity.hash,
            quality=quality, format_version=FORMAT_VERSION, payload_size=len(payload),
            bits_per_pixel=8 * len(payload) / (height * width), encode_time_ms=encode_ms)
        out.payload = array.array("B", payload)
        self.stats.coded(len(payload), height * width, pixels.size)
        return out

    def _publish(self, frame: _Frame, out: CompressedLatent | None) -> None:
        """Publishes the encoded frames in the order they arrived."""
        if out is None or not self.context.ok():  # dropped, or shutting down
            return
        self.publisher.publish(out)
        self.stats.count("frames_out")
        self.stats.observe("encode_ms", out.encode_time_ms)
        self.stats.observe("latency_ms", self._age_ms(frame.msg.header.stamp))

    def _on_worker_error(self, frame: _Frame, error: BaseException) -> None:
        if not self.context.ok():  # a publish that raced the shutdown: nothing to report
            return
        self.stats.count("frames_dropped_error")
        self._log_error(type(error).__name__, f"frame {frame.index} could not be encoded: "
                                              f"{type(error).__name__}: {error}")

    # -- helpers -------------------------------------------------------------------------------
    def _refuse(self, encoding: str, error: Exception) -> None:
        """Count a frame of an encoding the codec cannot code; log once per encoding."""
        self.stats.count("frames_dropped_unsupported")
        with self._refused_lock:
            first = encoding not in self._refused
            self._refused.add(encoding)
            self.stats.set_info("refused_encodings", ",".join(sorted(e or '""' for e in self._refused)))
        if first:
            self.get_logger().error(f"camera {self.camera}: {error}; dropping every {encoding!r} frame "
                                    "(logged once per encoding, counted in frames_dropped_unsupported)")

    def _log_error(self, reason: str, text: str) -> None:
        suppressed = self._errors.allow(reason)
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            self.get_logger().error(f"camera {self.camera}: {text}{more}")

    def _check_quality(self, quality: Any) -> None:
        top = self.codec.num_qualities - 1
        if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= top:
            raise NodeSetupError(f"quality must be an integer in 0..{top} for model "
                                 f"{self.codec.identity.name}, got {quality!r}")

    def _age_ms(self, stamp: Any) -> float:
        return (self.get_clock().now() - Time.from_msg(stamp)).nanoseconds / 1e6


def main(args: Sequence[str] | None = None) -> NoReturn:
    """The node's process: runs until Ctrl-C or SIGTERM, then exits (never returns)."""
    run_node(EncoderNode, DEFAULT_NAME, args)


if __name__ == "__main__":
    import sys

    sys.exit(main())

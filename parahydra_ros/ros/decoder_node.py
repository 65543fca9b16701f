"""Joint decoder node: N cameras' ``CompressedLatent`` in, N reconstructed ``Image`` out.

    ros2 run parahydra_ros decoder_node --ros-args -p cameras:="[/cam0, /cam1, /cam2]"

Topics:

* subscribes the N ``input_topics`` (default ``<camera>/latent``), QoS ``input_qos``
  (sensor data);
* publishes one ``sensor_msgs/Image`` per input on ``output_topics`` (default
  ``<camera>/image_reconstructed``) with the original header, size and encoding,
  QoS ``output_qos`` (reliable);
* publishes ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``), see ``diagnostics.py``.

Flow: every message of the N subscriptions goes to one ``sync.CameraGrouper``
(``ros/sync.py`` feeds it), the object ``parahydra bag`` groups recordings with:
message_filters' approximate-time policy (``slop``, ``queue_size``; tested equal to
message_filters' ``ApproximateTimeSynchronizer``) fires complete groups, and a frame no
complete group took within ``partial_deadline`` seconds is decoded with whatever
views of its instant are there, so a camera that stops never stops the others (it is
logged once when it goes missing and once when it comes back; every camera falling
silent at once is one event, see ``sync.MissingInputs``). Groups go to a bounded work
queue (``work_queue_size``, the oldest dropped and counted when the decoder falls
behind) served by one worker thread. There each payload is parsed and CRC-checked
once, every field the message repeats from it is checked (``codec.latent_message``),
and ``ParaHydraCodec.decode_group`` entropy-decodes every view on its own and runs
Para-JD across the views of one size. A view that cannot be decoded (corrupt, another
model or quality, a message that contradicts its payload) is dropped with a
rate-limited error naming the camera and the reason; the others are decoded and the
node goes on. A view whose header declares more than ``max_pixels`` pixels is dropped
(reason ``TooLarge``) before any decoding work, and once a camera has been seen, a
change of its declared size is logged (and counted in ``size_changes_<camera>``)
before the frame is decoded at its new size.
"""
from __future__ import annotations

import array
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from parahydra_ros.msg import CompressedLatent

from ..codec import image_conversions as conv
from ..codec.container import CodedView
from ..codec.errors import PayloadError
from ..codec.latent_message import parse_latent
from ..pipeline.parameters import DECODER
from ..sync import CameraGrouper, Group, SyncSettings
from ..sync.worker import DropOldestWorker
from .diagnostics import NodeStats, RateLimiter, diagnostic_status
from .qos import describe, qos_profile
from .runtime import NodeSetupError, WorkerNodeMixin, declare_parameters, format_values, load_codec, run_node
from .sync import subscribe_grouped

NODE_PARAMETERS = DECODER
"""This node's parameters: name → ``ParamSpec`` (default, type, description)."""

DEFAULT_NAME = "parahydra_decoder"


@dataclass(frozen=True)
class Stream:
    """One camera as the decoder sees it."""

    camera: str
    input_topic: str
    output_topic: str


def _parent(topic: str) -> str:
    return topic.rstrip("/").rpartition("/")[0]


def resolve_streams(input_topics: Sequence[str], cameras: Sequence[str],
                    output_topics: Sequence[str]) -> list[Stream]:
    """The decoder's streams from its three list parameters (see their descriptions)."""
    if input_topics and cameras and len(cameras) != len(input_topics):
        raise NodeSetupError(f"cameras has {len(cameras)} entries, input_topics {len(input_topics)}")
    if not input_topics:
        if not cameras:
            raise NodeSetupError("no inputs: set input_topics or cameras")
        input_topics = [f"{c.rstrip('/')}/latent" if c.strip("/") else "latent" for c in cameras]
    if len(set(input_topics)) != len(input_topics):
        raise NodeSetupError(f"input_topics has duplicates: {list(input_topics)}")
    if output_topics and len(output_topics) != len(input_topics):
        raise NodeSetupError(f"output_topics has {len(output_topics)} entries, inputs {len(input_topics)}")
    streams = []
    for i, topic in enumerate(input_topics):
        parent = _parent(topic)
        if cameras:
            name = [c for c in cameras[i].split("/") if c]
        else:
            name = [c for c in parent.split("/") if c]
        output = output_topics[i] if output_topics else (f"{parent}/image_reconstructed" if parent
                                                         else "image_reconstructed")
        streams.append(Stream(camera=name[-1] if name else topic, input_topic=topic, output_topic=output))
    if len({s.output_topic for s in streams}) != len(streams):
        raise NodeSetupError(f"output topics collide: {[s.output_topic for s in streams]}")
    return streams


class DecoderNode(WorkerNodeMixin, Node):
    """Time-synchronizes N cameras' latents and decodes each instant jointly."""

    def __init__(self, node_name: str = DEFAULT_NAME, *, codec: Any = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, NODE_PARAMETERS)
        p = self.params
        self.streams = resolve_streams(p["input_topics"], p["cameras"], p["output_topics"])
        for key, low in (("slop", 0.0), ("partial_deadline", 0.0), ("error_log_period", 0.0)):
            if p[key] <= low:
                raise NodeSetupError(f"{key} must be positive, got {p[key]}")
        for key in ("queue_size", "work_queue_size", "max_pixels"):
            if p[key] < 1:
                raise NodeSetupError(f"{key} must be at least 1, got {p[key]}")
        try:
            input_qos, output_qos = qos_profile(p["input_qos"]), qos_profile(p["output_qos"])
        except ValueError as error:
            raise NodeSetupError(str(error)) from None
        self.codec = codec if codec is not None else load_codec(p["model"], p["device"], p["threads"],
                                                                p["max_pixels"])
        self.joint = p["joint"]
        self.max_pixels = p["max_pixels"]
        self._sizes: dict[int, tuple[int, int]] = {}  # stream -> (width, height) last declared (worker thread)

        self.stats = NodeStats()
        self.stats.set_info("model", f"{self.codec.identity.name} ({self.codec.identity.hash})")
        self.stats.set_info("synchronizer", "parahydra_ros.sync")
        self.stats.set_info("missing_cameras", "")
        self._errors = RateLimiter(p["error_log_period"])
        n = len(self.streams)
        self.grouper: CameraGrouper[CompressedLatent] = CameraGrouper(
            n, SyncSettings(p["slop"], p["queue_size"], p["partial_deadline"]),
            capacity=max(64, 4 * p["queue_size"]))

        self.image_publishers = [self.create_publisher(Image, s.output_topic, output_qos) for s in self.streams]
        self.worker: DropOldestWorker[Group[CompressedLatent]] = DropOldestWorker(
            self._decode, maxsize=p["work_queue_size"], name="joint-decoder",
            on_drop=lambda _: self.stats.count("groups_dropped"), on_error=self._on_worker_error)
        self.subscribers = subscribe_grouped(
            self, CompressedLatent, [s.input_topic for s in self.streams], input_qos, self.grouper,
            on_group=self.worker.submit, on_message=self._on_message)
        self.create_timer(max(0.01, p["partial_deadline"] / 5), self._poll_partial)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if p["diagnostics_period"] > 0:
            self.create_timer(p["diagnostics_period"], self.publish_diagnostics)
        topics = ", ".join(f"{s.camera}: {sub.topic_name} → {pub.topic_name}"
                           for s, sub, pub in zip(self.streams, self.subscribers, self.image_publishers))
        self.get_logger().info(
            f"decoding {n} cameras {'jointly' if self.joint else 'separately'} ({topics}); in "
            f"{describe(input_qos)}, out {describe(output_qos)}; model {self.codec.identity.name} "
            f"({self.codec.identity.hash}) on {self.codec.device}; "
            + format_values(p, ["slop", "queue_size", "partial_deadline", "work_queue_size"]))

    # -- callbacks: short, the decode is in the worker ---------------------------------------------
    def _on_message(self, index: int, msg: CompressedLatent) -> None:
        """Every message, before the grouper sees it: counted."""
        self.stats.count("frames_in")
        self.stats.count(f"frames_in_{self.streams[index].camera}")

    def _poll_partial(self) -> None:
        """Timer: decode what waited past the deadline; report cameras that went missing or came back."""
        result = self.grouper.poll(time.monotonic())
        for group in result.groups:
            self.worker.submit(group)
        went, back = result.went_missing, result.came_back
        deadline = self.params["partial_deadline"]
        if result.all_fell_silent:  # once per episode (sync.MissingInputs)
            self.get_logger().warning(f"no camera has sent anything for more than {deadline} s (said once until "
                                      "they deliver steadily again)")
        for index in went:
            s = self.streams[index]
            self.stats.count(f"missing_reports_{s.camera}")
            self.get_logger().warning(
                f"camera {s.camera} ({s.input_topic}) is missing: nothing for more than {deadline} s; "
                "decoding the other cameras without it until it returns")
        for index in back:
            s = self.streams[index]
            self.stats.count(f"returned_reports_{s.camera}")
            self.get_logger().info(f"camera {s.camera} ({s.input_topic}) is back")
        if went or back:
            missing = sorted(self.streams[i].camera for i in self.grouper.missing)
            self.stats.set_info("missing_cameras", ",".join(missing))

    def publish_diagnostics(self) -> None:
        snapshot = self.stats.snapshot()
        snapshot["work_queue_pending"] = self.worker.pending
        snapshot["frames_dropped_collector"] = self.grouper.dropped
        missing = snapshot.get("missing_cameras", "")
        snapshot["all_cameras_silent"] = int(self.grouper.all_silent)
        message = (f"{snapshot.get('groups_complete', 0)} complete, {snapshot.get('groups_partial', 0)} "
                   f"partial groups, {snapshot.get('groups_dropped', 0)} dropped"
                   + (f"; missing: {missing}" if missing else ""))
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [diagnostic_status(self.get_fully_qualified_name(), DEFAULT_NAME, snapshot,
                                        "warn" if missing else "ok", message)]
        self._diagnostics.publish(msg)

    # -- the worker ------------------------------------------------------------------------------
    def _decode(self, group: Group[CompressedLatent]) -> None:
        """Decode one instant's views jointly and publish each (runs on the worker thread)."""
        views: list[tuple[int, CompressedLatent, CodedView]] = []
        for index in group.members:
            msg = group.items[index]
            if msg.encoding not in conv.CHANNELS:
                self._view_error(index, msg, "UnsupportedEncoding", str(conv.UnsupportedEncoding(msg.encoding)))
                continue
            try:
                view = parse_latent(msg)  # parsed and checked once
            except PayloadError as error:
                self._view_error(index, msg, error.reason, str(error))
                continue
            size = (view.header.width, view.header.height)
            if size[0] * size[1] > self.max_pixels:
                self._view_error(index, msg, "TooLarge", f"declares {size[0]}x{size[1]} = {size[0] * size[1]:,} "
                                 f"pixels, more than max_pixels ({self.max_pixels:,}); not decoded")
                continue
            self._check_size(index, size)
            views.append((index, msg, view))
        self.stats.count("groups_complete" if group.complete else "groups_partial")
        if not views:
            return
        start = time.perf_counter()
        decoded = self.codec.decode_group([view for _, _, view in views], joint=self.joint)
        decode_ms = 1e3 * (time.perf_counter() - start)
        if not self.context.ok():  # shutting down
            return
        self.stats.observe("decode_ms", decode_ms)
        self.stats.observe("decode_ms_per_view", decode_ms / len(views))
        for row, (index, msg, _) in enumerate(views):
            if row in decoded.errors:
                error = decoded.errors[row]
                self._view_error(index, msg, error.reason, str(error))
                continue
            pixels = decoded.images[row]
            fields = conv.pixels_to_image(pixels, msg.encoding)
            image = Image(header=msg.header, height=fields["height"], width=fields["width"],
                          encoding=fields["encoding"], is_bigendian=0, step=fields["step"])
            image.data = array.array("B", fields["data"])
            self.image_publishers[index].publish(image)
            self.stats.count("frames_out")
            self.stats.coded(msg.payload_size, fields["height"] * fields["width"], len(fields["data"]))
            age = self.get_clock().now() - Time.from_msg(msg.header.stamp)
            self.stats.observe("latency_ms", age.nanoseconds / 1e6)

    def _check_size(self, index: int, size: tuple[int, int]) -> None:
        """Log (and count) a camera whose declared size differs from the one it had."""
        before = self._sizes.get(index)
        self._sizes[index] = size
        if before is not None and before != size:
            s = self.streams[index]
            self.stats.count(f"size_changes_{s.camera}")
            self.get_logger().warning(f"camera {s.camera} ({s.input_topic}) changed size from {before[0]}x{before[1]} "
                                      f"to {size[0]}x{size[1]}; decoding it at the new size")

    def _view_error(self, index: int, msg: CompressedLatent, reason: str, text: str) -> None:
        """Count a dropped view and log it, at most once per camera and reason per error_log_period."""
        camera = self.streams[index].camera
        self.stats.count("views_dropped")
        self.stats.count(f"views_error_{reason}")
        suppressed = self._errors.allow((camera, reason))
        if suppressed is not None:
            stamp = msg.header.stamp
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            self.get_logger().error(
                f"camera {camera} ({self.streams[index].input_topic}): dropped frame "
                f"{msg.frame_index} stamped {stamp.sec}.{stamp.nanosec:09d}: {reason}: {text}{more}")

    def _on_worker_error(self, group: Group[CompressedLatent], error: BaseException) -> None:
        if not self.context.ok():  # a publish that raced the shutdown: nothing to report
            return
        self.stats.count("groups_error")
        cameras = ",".join(self.streams[i].camera for i in group.members)
        suppressed = self._errors.allow(("group", type(error).__name__))
        if suppressed is not None:
            self.get_logger().error(f"group of {cameras} could not be decoded: {type(error).__name__}: "
                                    f"{error}" + (f" ({suppressed} more)" if suppressed else ""))


def main(args: Sequence[str] | None = None) -> NoReturn:
    """The node's process: runs until Ctrl-C or SIGTERM, then exits (never returns)."""
    run_node(DecoderNode, DEFAULT_NAME, args)


if __name__ == "__main__":
    import sys

    sys.exit(main())

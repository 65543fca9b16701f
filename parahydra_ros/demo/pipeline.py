"""One run of the real pipeline over DDS on this machine, measured: what ``parahydra demo`` and
``bench/pipeline.py`` both run.

``run_pipeline(spec)`` starts, as ``parahydra launch`` does (one process per node, the same
parser, params files and process group), one ``encoder_node`` per camera namespace and one
joint ``decoder_node``; the pipeline YAML is written to the work folder first, so
``parahydra launch WORK/pipeline.yaml`` starts the same nodes again. This process holds, on
one rclpy context of its own:

* the camera replay node (``CameraReplayNode``), publishing every camera's
  ``sensor_msgs/Image`` on ``/<camera>/image``, every view of a group with one stamp;
* a collector node subscribing, as serialized bytes (so every byte on the wire is counted),
  to every camera's ``image``, ``latent`` and ``image_reconstructed`` and to
  ``/diagnostics``; frames are matched by camera and header stamp.

Start-up: the nodes are up when the ROS graph shows every topic's endpoints; then one
warm-up group goes through the whole pipeline (published again if a camera's frame is lost)
and is not measured. Pacing of the ``frames`` measured groups: closed loop (``rate`` 0) —
the next group is published as soon as the encoders are done with the last one and fewer
than ``in_flight`` groups are unfinished, so the encoders code group k+1 while the decoder
decodes group k, and no frame is dropped; or a fixed ``rate`` (the replay node's own timer,
as a real camera: frames the pipeline cannot take are dropped and counted by the nodes).
A group is finished when every camera's reconstruction came back; it is lost when a
camera's latent is not back ``ENCODE_TIMEOUT_S`` after publication, when a later group
finished ``LOST_AFTER_S`` before, or after ``frame_timeout`` seconds.

Every node process is stopped on return, on an error and on Ctrl-C (SIGINT, then SIGTERM,
then SIGKILL; they also die with this process, see ``pipeline/launcher.py``).
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from parahydra_ros.msg import CompressedLatent

from ..ros.camera_replay_node import CameraReplayNode
from ..ros.diagnostics import parse_status
from ..pipeline.launcher import ProcessGroup, node_command, write_params_file
from ..pipeline.config import load_pipeline
from ..codec.image_conversions import msg_to_pixels
from ..ros.qos import qos_profile

#: A measured group is lost when a later group finished this long ago and it did not.
LOST_AFTER_S = 3.0
#: Warm-up attempts: a warm-up group a camera lost is published again, this many times at most.
WARMUP_ATTEMPTS = 4
#: Seconds after which a frame whose latent never came is lost (an encoder dropped or missed it).
ENCODE_TIMEOUT_S = 20.0


class PipelineError(RuntimeError):
    """The pipeline could not run: a node failed or nothing came back in time (says which, and its log)."""


@dataclass(frozen=True)
class PipelineSpec:
    """What to run. ``source``: ``synthetic`` (``width`` × ``height`` views) or a folder
    ``ROOT/<group>/<view>.png`` (every group's views one size). ``model``: a checkpoint path."""

    cameras: tuple[str, ...]
    frames: int
    model: str
    quality: int = 1
    device: str = "cpu"
    source: str = "synthetic"
    width: int = 640
    height: int = 480
    rate: float = 0.0  # groups per second; 0: closed loop
    in_flight: int = 2  # closed loop: groups on their way at once
    seed: int = 0
    encoder_threads: int = 1  # torch threads per encoder process (0: torch's default)
    decoder_threads: int = -1  # -1: the cores the encoders leave, at least 1
    # Seconds a frame waits for the other cameras before a partial group is decoded: long,
    # as cameras here never stop, but encoders sharing a few cores finish a group seconds apart.
    partial_deadline: float = 10.0
    startup_timeout: float = 240.0
    frame_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be distinct names, got {self.cameras}")
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, got {self.frames}")
        if self.rate < 0 or self.in_flight < 1:
            raise ValueError("rate must be >= 0 and in_flight >= 1")


@dataclass
class Frame:
    """One camera's frame of one group, as the collector saw it (times: wall clock, ns)."""

    camera: str
    stamp_ns: int
    original: np.ndarray | None = None
    image_bytes: int = 0  # the serialized sensor_msgs/Image from the camera
    latent_bytes: int = 0  # the serialized CompressedLatent (every byte on the wire)
    payload_bytes: int = 0  # its ParaHydra payload (the coded view, container included)
    encode_ms: float = math.nan  # the encoder's own time for this frame (CompressedLatent field)
    latent_ns: int | None = None
    reconstruction: np.ndarray | None = None
    reconstruction_bytes: int = 0
    reconstructed_ns: int | None = None

    @property
    def complete(self) -> bool:
        return self.original is not None and self.reconstruction is not None

    @property
    def decoder_ms(self) -> float:
        """Latent received → reconstruction received: sync wait, queue, joint decode, transport."""
        if self.latent_ns is None or self.reconstructed_ns is None:
            return math.nan
        return (self.reconstructed_ns - self.latent_ns) / 1e6

    @property
    def latency_ms(self) -> float:
        """Capture stamp → reconstruction received (the replay stamps a group when it publishes it)."""
        return math.nan if self.reconstructed_ns is None else (self.reconstructed_ns - self.stamp_ns) / 1e6


@dataclass
class PipelineResults:
    """What one run measured. ``frames[camera]``: that camera's frame of every measured group."""

    spec: PipelineSpec
    domain_id: str
    stamps: list[int]
    frames: dict[str, list[Frame]]
    groups_lost: int
    diagnostics: dict[str, dict[str, Any]]
    model: dict[str, str]
    startup_s: float
    warmup_s: float
    measure_s: float  # first measured publish → last reconstruction
    work_dir: Path
    logs: dict[str, Path] = field(default_factory=dict)

    def reconstructed(self, camera: str) -> list[Frame]:
        return [f for f in self.frames[camera] if f.complete]

    @property
    def groups_complete(self) -> int:
        return sum(all(self.frames[c][i].complete for c in self.spec.cameras) for i in range(len(self.stamps)))


def dds_environment() -> tuple[str, bool]:
    """DDS stays on this machine: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` unless set, and a
    ``ROS_DOMAIN_ID`` for this run unless set. Returns the domain and whether it was picked here."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if os.environ.get("ROS_DOMAIN_ID"):
        return os.environ["ROS_DOMAIN_ID"], False
    os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)  # 100..199: clear of the usual 0
    return os.environ["ROS_DOMAIN_ID"], True


def pipeline_config(spec: PipelineSpec) -> dict[str, Any]:
    """The pipeline YAML of ``spec`` (see ``pipeline/config.py``); its replay section is what
    ``parahydra launch`` would start (a timer at ``rate``, 1/s for a closed-loop run)."""
    replay: dict[str, Any] = {"enabled": True, "source": spec.source, "rate": spec.rate or 1.0,
                              "seed": spec.seed}
    if spec.source == "synthetic":
        replay.update(width=spec.width, height=spec.height)
    return {
        "model": str(Path(spec.model).resolve()), "quality": spec.quality, "device": spec.device,
        # Reliable camera subscriptions: with best effort (the encoders' default, sensor_data) most
        # ~1 MB VGA images were lost here (Fast DDS, localhost): one lost fragment loses the image.
        "encoder": {"threads": spec.encoder_threads, "input_qos": "reliable"},
        "cameras": [{"name": name} for name in spec.cameras],
        "decoder": {"threads": decoder_threads(spec), "partial_deadline": spec.partial_deadline},
        "replay": replay,
    }


def decoder_threads(spec: PipelineSpec) -> int:
    """The decoder's torch threads: ``spec.decoder_threads``, or (-1) the cores left by the encoders."""
    if spec.decoder_threads >= 0:
        return spec.decoder_threads
    return max(1, (os.cpu_count() or 1) - len(spec.cameras) * max(1, spec.encoder_threads))


def run_pipeline(spec: PipelineSpec, work_dir: Path, say: Callable[[str], None] = print) -> PipelineResults:
    """Run the pipeline of ``spec`` (node logs and its YAML go to ``work_dir``); see the module docstring."""
    domain, _ = dds_environment()
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "pipeline.yaml"
    config_path.write_text("# Written by parahydra demo: `parahydra launch` this file to run the same nodes.\n"
                           + yaml.safe_dump(pipeline_config(spec), sort_keys=False))
    nodes = load_pipeline(config_path, replay=False).nodes
    (work_dir / "params").mkdir(exist_ok=True)
    (work_dir / "logs").mkdir(exist_ok=True)

    started = time.monotonic()
    group = ProcessGroup(stop_timeout=5.0)
    group.env.update(PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    logs: dict[str, Path] = {}
    files = []
    session = None
    try:
        for node in nodes:
            label = f"{node.executable} {node.fully_qualified_name}"
            logs[label] = work_dir / "logs" / f"{node.fully_qualified_name.strip('/').replace('/', '.')}.log"
            files.append(logs[label].open("w"))
            group.start(label, node_command(node, write_params_file(node, work_dir / "params")), output=files[-1])
        session = _Session(spec, group, logs)
        session.wait_ready(started + spec.startup_timeout)
        startup_s = time.monotonic() - started
        say(f"pipeline up in {startup_s:.1f} s; warming up")
        warm = time.monotonic()
        warmup_stamps = session.warm_up()
        warmup_s = time.monotonic() - warm
        say(f"warm-up group back in {warmup_s:.1f} s; measuring {spec.frames} groups "
            + ("(closed loop)" if not spec.rate else f"at {spec.rate:g} groups/s"))
        stamps, lost, measure_s = session.measure(after=max(warmup_stamps))
        session.settle_diagnostics()
        frames = {c: [session.frame(c, s) for s in stamps] for c in spec.cameras}
        return PipelineResults(
            spec=spec, domain_id=domain, stamps=stamps, frames=frames, groups_lost=lost,
            diagnostics=dict(session.collector.diagnostics), model=dict(session.collector.model),
            startup_s=startup_s, warmup_s=warmup_s, measure_s=measure_s, work_dir=work_dir, logs=logs)
    finally:
        group.stop()
        if session is not None:
            session.close()
        for handle in files:
            handle.close()


class _Session:
    """The demo process's side of a run: its rclpy context, replay and collector nodes, pacing."""

    def __init__(self, spec: PipelineSpec, group: ProcessGroup, logs: dict[str, Path]) -> None:
        self.spec, self.group, self.logs = spec, group, logs
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=rclpy.SignalHandlerOptions.NO)
        self.collector = _Collector(spec.cameras, self.context)
        overrides = [Parameter("cameras", value=list(spec.cameras)), Parameter("source", value=spec.source),
                     Parameter("rate", value=float(spec.rate or 1.0)), Parameter("seed", value=spec.seed),
                     Parameter("width", value=spec.width), Parameter("height", value=spec.height),
                     Parameter("output_qos", value="reliable")]
        self.replay = CameraReplayNode(context=self.context, parameter_overrides=overrides)
        self.replay.timer.cancel()  # published by measure() (or its timer, restarted there)
        self.executor = SingleThreadedExecutor(context=self.context)
        for node in (self.collector, self.replay):
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self._spin, name="demo-executor", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    # -- start-up ----------------------------------------------------------------------------------
    def check_nodes(self) -> None:
        """``PipelineError`` naming the node, with its log's last lines, if a node process ended."""
        for child in self.group.children:
            code = child.process.poll()
            if code is not None:
                raise PipelineError(f"{child.label} exited with status {code}:\n{_tail(self.logs[child.label])}"
                                    f"\n(whole log: {self.logs[child.label]})")

    def wait_ready(self, deadline: float) -> None:
        """Until every topic has its endpoints: encoders subscribed and publishing, decoder both."""
        node = self.collector
        while True:
            self.check_nodes()
            missing = []
            for camera, publisher in zip(self.spec.cameras, self.replay.image_publishers):
                ns = f"/{camera}"
                if publisher.get_subscription_count() < 2:  # its encoder and the collector
                    missing.append(f"{ns}/image subscriber")
                if node.count_publishers(f"{ns}/latent") < 1 or node.count_subscribers(f"{ns}/latent") < 2:
                    missing.append(f"{ns}/latent")
                if node.count_publishers(f"{ns}/image_reconstructed") < 1:
                    missing.append(f"{ns}/image_reconstructed")
            if not missing:
                return
            if time.monotonic() > deadline:
                raise PipelineError(f"the nodes did not come up within {self.spec.startup_timeout:.0f} s "
                                    f"(missing: {', '.join(missing)}); logs: {_folder(self.logs)}")
            time.sleep(0.2)

    def warm_up(self) -> list[int]:
        """Publish a group and wait until every camera's reconstruction of it is back; again if lost."""
        stamps = []
        deadline = time.monotonic() + self.spec.startup_timeout
        for _ in range(WARMUP_ATTEMPTS):
            stamp = self._publish()
            stamps.append(stamp)
            published = time.monotonic()
            while not self.collector.complete(stamp):
                self.check_nodes()
                now = time.monotonic()
                if now - published > ENCODE_TIMEOUT_S and not self.collector.encoded(stamp):
                    break  # an encoder never got it: publish another
                if now > deadline:
                    raise PipelineError(f"the warm-up group did not come back within "
                                        f"{self.spec.startup_timeout:.0f} s ({self._seen(stamps)}); "
                                        f"logs: {_folder(self.logs)}")
                self.collector.wait(0.2)
            else:
                return stamps
        raise PipelineError(f"{WARMUP_ATTEMPTS} warm-up groups were lost on their way ({self._seen(stamps)}); "
                            f"logs: {_folder(self.logs)}")

    # -- measurement -------------------------------------------------------------------------------
    def measure(self, after: int) -> tuple[list[int], int, float]:
        """Publish ``frames`` groups and wait for them; returns their stamps, how many were lost,
        and the seconds from the first publication to the last reconstruction.

        Closed loop: a group is published once every camera's latent of the groups on their way
        is back (the encoders are idle: a frame arriving while another waits would replace it)
        and fewer than ``in_flight`` groups are unfinished, so encoders and decoder overlap."""
        spec = self.spec
        stamps: list[int] = []
        published_at: dict[int, float] = {}
        finished: dict[int, float] = {}  # stamp -> monotonic time it finished (complete or lost)
        lost = 0
        start = time.monotonic()
        if spec.rate:
            already = self.replay.groups_published
            self.replay.set_parameters([Parameter("rate", value=float(spec.rate))])  # restarts its timer
        while len(finished) < spec.frames:
            self.check_nodes()
            now = time.monotonic()
            if spec.rate:
                if self.replay.groups_published - already >= spec.frames:
                    self.replay.timer.cancel()
                for stamp in self.collector.stamps_after(after)[: spec.frames]:
                    if stamp not in published_at:
                        stamps.append(stamp)
                        published_at[stamp] = now
            else:
                waiting = [s for s in stamps if s not in finished]
                if (len(stamps) < spec.frames and len(waiting) < spec.in_flight
                        and all(self.collector.encoded(s) for s in waiting)):
                    stamp = self._publish()
                    stamps.append(stamp)
                    published_at[stamp] = time.monotonic()
            for stamp in stamps:
                if stamp in finished:
                    continue
                if self.collector.complete(stamp):
                    finished[stamp] = now
                    continue
                later = [t for s, t in finished.items() if s > stamp and self.collector.complete(s)]
                age = now - published_at[stamp]
                if (age > spec.frame_timeout or (age > ENCODE_TIMEOUT_S and not self.collector.encoded(stamp))
                        or (later and now - min(later) > LOST_AFTER_S)):
                    finished[stamp] = now
                    lost += 1
            self.collector.wait(0.05)
        if spec.rate:
            self.replay.timer.cancel()
        ends = [f.reconstructed_ns for s in stamps for c in spec.cameras
                if (f := self.collector.get(c, s)) is not None and f.reconstructed_ns is not None]
        first = min(stamps) if stamps else time.time_ns()
        measure_s = (max(ends) - first) / 1e9 if ends else time.monotonic() - start
        return stamps, lost, measure_s

    def settle_diagnostics(self) -> None:
        """Wait for every node's next /diagnostics message, so its counters include the last frames."""
        since = time.time_ns()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if len([t for t in self.collector.diagnostics_ns.values() if t > since]) >= len(self.spec.cameras) + 1:
                return
            time.sleep(0.1)

    def frame(self, camera: str, stamp: int) -> Frame:
        return self.collector.get(camera, stamp) or Frame(camera, stamp)

    def _seen(self, stamps: list[int]) -> str:
        """How far each camera's frames of ``stamps`` got, for an error message."""
        return "; ".join(f"{c}: " + ", ".join(self._progress(c, s) for s in stamps) for c in self.spec.cameras)

    def _progress(self, camera: str, stamp: int) -> str:
        """How far one frame got: 'image', 'latent' or 'reconstructed' (what the collector saw)."""
        frame = self.collector.get(camera, stamp)
        if frame is None:
            return "nothing"
        return ("reconstructed" if frame.reconstruction is not None else "latent" if frame.latent_ns
                else "image" if frame.original is not None else "nothing")

    def _publish(self) -> int:
        stamp = self.replay.publish_group()
        if stamp is None:
            raise PipelineError(f"the camera replay ran out of groups ({self.spec.source})")
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        for node in (self.replay, self.collector):
            node.destroy_node()
        self.context.try_shutdown()
        self.thread.join(timeout=2.0)


class _Collector(Node):
    """Subscribes to every camera's image, latent and reconstruction (serialized) and /diagnostics."""

    def __init__(self, cameras: Sequence[str], context: Any) -> None:
        super().__init__("parahydra_demo_collector", context=context)
        self.cameras = tuple(cameras)
        self._condition = threading.Condition()
        self._frames: dict[tuple[str, int], Frame] = {}
        self.diagnostics: dict[str, dict[str, Any]] = {}
        self.diagnostics_ns: dict[str, int] = {}
        self.model: dict[str, str] = {}
        qos = qos_profile("reliable:50")
        for camera in cameras:
            ns = f"/{camera}"
            # raw: the serialized bytes, to count them; callbacks with the MessageInfo, whose
            # received_timestamp (set by the middleware on arrival) does not depend on this executor
            self.create_subscription(Image, f"{ns}/image", partial(self._on_image, camera), qos, raw=True)
            self.create_subscription(CompressedLatent, f"{ns}/latent", partial(self._on_latent, camera), qos,
                                     raw=True)
            self.create_subscription(Image, f"{ns}/image_reconstructed", partial(self._on_reconstruction, camera),
                                     qos, raw=True)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos_profile("reliable:50"))

    # -- callbacks (executor thread) ---------------------------------------------------------------
    def _on_image(self, camera: str, data: bytes, info: Any) -> None:
        msg = deserialize_message(data, Image)
        pixels = msg_to_pixels(msg)
        with self._condition:
            frame = self._frame(camera, msg.header.stamp)
            frame.original, frame.image_bytes = pixels, len(data)
            self._condition.notify_all()

    def _on_latent(self, camera: str, data: bytes, info: Any) -> None:
        received = _received_ns(info)
        msg = deserialize_message(data, CompressedLatent)
        with self._condition:
            frame = self._frame(camera, msg.header.stamp)
            frame.latent_bytes, frame.payload_bytes = len(data), len(msg.payload)
            frame.encode_ms, frame.latent_ns = float(msg.encode_time_ms), received
            self.model = {"name": msg.model_name, "hash": msg.model_hash}
            self._condition.notify_all()

    def _on_reconstruction(self, camera: str, data: bytes, info: Any) -> None:
        received = _received_ns(info)
        msg = deserialize_message(data, Image)
        pixels = msg_to_pixels(msg)
        with self._condition:
            frame = self._frame(camera, msg.header.stamp)
            frame.reconstruction, frame.reconstruction_bytes, frame.reconstructed_ns = pixels, len(data), received
            self._condition.notify_all()

    def _on_diagnostics(self, msg: Any) -> None:
        with self._condition:
            for status in msg.status:
                self.diagnostics[status.name] = {"message": status.message, **parse_status(status)}
                self.diagnostics_ns[status.name] = time.time_ns()

    def _frame(self, camera: str, stamp: Any) -> Frame:
        key = (camera, stamp.sec * 1_000_000_000 + stamp.nanosec)
        if key not in self._frames:
            self._frames[key] = Frame(camera, key[1])
        return self._frames[key]

    # -- queries (any thread) ------------------------------------------------------------------------
    def get(self, camera: str, stamp: int) -> Frame | None:
        with self._condition:
            return self._frames.get((camera, stamp))

    def complete(self, stamp: int) -> bool:
        """Whether every camera's reconstruction of the group stamped ``stamp`` is back."""
        with self._condition:
            return all((f := self._frames.get((c, stamp))) is not None and f.reconstruction is not None
                       for c in self.cameras)

    def encoded(self, stamp: int) -> bool:
        """Whether every camera's latent of the group stamped ``stamp`` is back."""
        with self._condition:
            return all((f := self._frames.get((c, stamp))) is not None and f.latent_ns is not None
                       for c in self.cameras)

    def stamps_after(self, stamp: int) -> list[int]:
        """Stamps of the camera images seen after ``stamp``, in order."""
        with self._condition:
            return sorted({s for (_, s), f in self._frames.items() if s > stamp and f.original is not None})

    def wait(self, timeout: float) -> None:
        with self._condition:
            self._condition.wait(timeout)


def _received_ns(info: Any) -> int:
    """When the middleware received a message (system clock, ns); now if it does not say."""
    try:
        stamp = int(info["received_timestamp"])
    except (KeyError, TypeError, ValueError):
        stamp = 0
    return stamp if stamp > 0 else time.time_ns()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty log)"


def _folder(logs: dict[str, Path]) -> str:
    return str(next(iter(logs.values())).parent) if logs else "(none)"

"""The parameters of every node, as tables: name, type, default, description, runtime-changeable.

One table per node (``ENCODER``, ``DECODER``, ``REPLAY``); each node module exposes its
table as ``NODE_PARAMETERS`` and declares exactly these parameters from it
(``ros.runtime.declare_parameters``), so the README's parameter tables, the pipeline
YAML validation (``pipeline.config``) and the launch files all read the same source.
ROS-free. The decoder's grouping defaults are ``sync.SyncSettings``'s, the ones the bag
tool groups with.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..sync.grouping import SyncSettings

#: Parameter types, by their ``ros2 param`` names.
TYPES = ("bool", "integer", "double", "string", "string_array")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter. ``runtime``: may be changed while the node runs (``ros2 param set``)."""

    name: str
    type: str
    default: Any
    description: str
    runtime: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"parameter {self.name}: type {self.type!r} not in {TYPES}")

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` converted to this parameter's type; ``ValueError`` naming the parameter if it cannot be."""
        prefix = f"{where}: " if where else ""
        if self.type == "bool":
            if isinstance(value, bool):
                return value
        elif self.type == "integer":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif self.type == "double":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif self.type == "string":
            if isinstance(value, str):
                return value
        elif self.type == "string_array":
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
        raise ValueError(f"{prefix}parameter {self.name!r} must be of type {self.type}, got {value!r}")


def _table(*specs: ParamSpec) -> dict[str, ParamSpec]:
    return {spec.name: spec for spec in specs}


_QOS_HELP = ("QoS profile: sensor_data (best effort, keep last 5), reliable (keep last 10), best_effort "
             "(keep last 10) or system_default; ':N' sets the depth, e.g. reliable:1")

ENCODER = _table(
    ParamSpec("camera_name", "string", "",
              "Name of this camera in CompressedLatent.camera and in the decoder's logs "
              "(empty: the last component of the node's namespace, else the node name)"),
    ParamSpec("model", "string", "", "ParaHydra checkpoint file (empty: the packaged default model)"),
    ParamSpec("quality", "integer", 3,
              "Quality / rate index of the model, 0 = lowest rate (packaged model: 0..5, "
              "~0.1..1 bpp)", runtime=True),
    ParamSpec("device", "string", "cpu", "Device of the encoder: cpu, cuda, cuda:N or auto"),
    ParamSpec("threads", "integer", 0,
              "CPU threads of each encoding worker (torch.set_num_threads; 0: the cores shared "
              "out among the workers). Set 1 when several encoders share a small computer"),
    ParamSpec("workers", "integer", 1,
              "Frames encoded at once, each on its own thread(s); published in order. On a "
              "2-core computer 2 workers of 1 thread encode ~1.7x the frames per second of one "
              "(bench/codec_speed.py), each frame taking a little longer"),
    ParamSpec("input_transport", "string", "raw",
              "raw: subscribe sensor_msgs/Image on 'image'; compressed: subscribe "
              "sensor_msgs/CompressedImage (JPEG/PNG) on 'image/compressed'"),
    ParamSpec("input_qos", "string", "sensor_data", f"QoS of the image subscription. {_QOS_HELP}"),
    ParamSpec("output_qos", "string", "reliable",
              f"QoS of the 'latent' publisher (reliable serves reliable and best-effort "
              f"subscribers). {_QOS_HELP}"),
    ParamSpec("roi_x", "integer", 0, "Region of interest: left column (applied before resizing)"),
    ParamSpec("roi_y", "integer", 0, "Region of interest: top row"),
    ParamSpec("roi_width", "integer", 0, "Region of interest: width in pixels (0: to the right edge)"),
    ParamSpec("roi_height", "integer", 0, "Region of interest: height in pixels (0: to the bottom edge)"),
    ParamSpec("resize_width", "integer", 0,
              "Resize to this width before coding (0: keep; if only one of width/height is set, "
              "the aspect ratio is kept)"),
    ParamSpec("resize_height", "integer", 0, "Resize to this height before coding (0: keep)"),
    ParamSpec("max_rate", "double", 0.0,
              "Most frames per second to encode (0: no limit); faster frames are dropped and "
              "counted. Independently, a frame arriving while the encoder is busy replaces the "
              "waiting one (dropped, counted); frames never queue without bound",
              runtime=True),
    ParamSpec("diagnostics_period", "double", 1.0,
              "Seconds between DiagnosticArray messages on /diagnostics (0: none)"),
)

DECODER = _table(
    ParamSpec("input_topics", "string_array", [],
              "CompressedLatent topics to decode jointly, one per camera (e.g. [/cam0/latent, "
              "/cam1/latent]); empty: '<camera>/latent' for every entry of 'cameras'"),
    ParamSpec("cameras", "string_array", [],
              "Camera namespaces (e.g. [/cam0, /cam1]); used when input_topics is empty"),
    ParamSpec("output_topics", "string_array", [],
              "sensor_msgs/Image topics, one per input (empty: '<camera>/image_reconstructed', "
              "the input topic's namespace)"),
    ParamSpec("model", "string", "", "ParaHydra checkpoint file (empty: the packaged default model)"),
    ParamSpec("device", "string", "auto", "Device of the joint decoder: auto (cuda if available), cpu, cuda"),
    ParamSpec("threads", "integer", 0,
              "CPU threads of the decoder's networks (torch.set_num_threads; 0: torch's default, one per core)"),
    ParamSpec("joint", "bool", True,
              "Decode the views of a group jointly (Para-JD across views); false: every view alone"),
    ParamSpec("slop", "double", SyncSettings.slop,
              "Approximate-time synchronization: most seconds between the stamps of one group"),
    ParamSpec("queue_size", "integer", SyncSettings.queue_size,
              "Messages per input the synchronizer keeps waiting for a match"),
    ParamSpec("partial_deadline", "double", 0.5,
              "Seconds a frame waits for the other cameras before the views present are decoded "
              "as a partial group (a stopped camera never stalls the others)"),
    ParamSpec("work_queue_size", "integer", 2,
              "Groups waiting for the decoder; when full the oldest is dropped and counted"),
    ParamSpec("input_qos", "string", "sensor_data", f"QoS of the latent subscriptions. {_QOS_HELP}"),
    ParamSpec("output_qos", "string", "reliable", f"QoS of the reconstructed image publishers. {_QOS_HELP}"),
    ParamSpec("error_log_period", "double", 5.0,
              "Seconds between repeated error logs for one camera and reason (others are counted)"),
    ParamSpec("diagnostics_period", "double", 1.0,
              "Seconds between DiagnosticArray messages on /diagnostics (0: none)"),
    ParamSpec("max_pixels", "integer", 4096 * 4096,
              "A latent declaring more pixels (height x width) than this is dropped before any "
              "decoding work (default 4096x4096): one message cannot exhaust the decoder"),
)

REPLAY = _table(
    ParamSpec("cameras", "string_array", ["cam0", "cam1", "cam2"],
              "Camera names; view i of a group is published on '<camera i>/image'"),
    ParamSpec("source", "string", "synthetic",
              "A folder of multi-view groups ROOT/<group>/<view>.png (views in name order), or "
              "'synthetic' for generated views of one scene"),
    ParamSpec("rate", "double", 5.0, "Groups per second", runtime=True),
    ParamSpec("encoding", "string", "rgb8", "Encoding of the published images: rgb8, bgr8, mono8, rgba8, bgra8"),
    ParamSpec("width", "integer", 192, "Width of synthetic views"),
    ParamSpec("height", "integer", 128, "Height of synthetic views"),
    ParamSpec("loop", "bool", True, "Start again after the last group of a folder"),
    ParamSpec("count", "integer", 0, "Stop publishing after this many groups (0: never)"),
    ParamSpec("seed", "integer", 0, "Seed of the synthetic scenes"),
    ParamSpec("muted_cameras", "string_array", [],
              "Cameras that publish nothing (to simulate a camera that stops); "
              "ros2 param set NODE muted_cameras \"[]\" unmutes them all", runtime=True),
    ParamSpec("frame_id_suffix", "string", "_optical", "header.frame_id is '<camera><suffix>'"),
    ParamSpec("output_qos", "string", "reliable", f"QoS of the image publishers. {_QOS_HELP}"),
)

NODES: dict[str, dict[str, ParamSpec]] = {
    "encoder_node": ENCODER,
    "decoder_node": DECODER,
    "camera_replay_node": REPLAY,
}
"""Parameter tables by executable name (``ros2 run parahydra_ros <name>``)."""


def check_parameters(table: Mapping[str, ParamSpec], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` with every name known to ``table`` and every value of the declared type."""
    checked = {}
    for name, value in values.items():
        if name not in table:
            raise ValueError(f"{where}: unknown parameter {name!r} (known: {', '.join(sorted(table))})")
        checked[name] = table[name].check(value, where)
    return checked


def markdown_table(table: Mapping[str, ParamSpec]) -> str:
    """The table as README markdown: parameter, type, default, description."""
    rows = ["| parameter | type | default | description |", "|---|---|---|---|"]
    for spec in table.values():
        default = _ros_value(spec.default)
        runtime = " (changeable at runtime)" if spec.runtime else ""
        # '<camera>' would be read as an HTML tag by markdown renderers, '|' as a new cell
        description = spec.description.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {spec.type} | `{default}` | {description}{runtime} |")
    return "\n".join(rows)


def _ros_value(value: Any) -> str:
    """A value as written on the command line (``-p name:=value``) or in a params file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return repr(value)

"""The pipeline YAML: N cameras' encoders, one joint decoder, optionally a camera replay.

The one parser of ``config/*.yaml``, used by ``launch/pipeline.launch.py`` (real ROS)
and by ``parahydra launch`` (``pipeline/launcher.py``): both start exactly the nodes
``load_pipeline`` returns. ROS-free (PyYAML only). Format::

    model: ""            # checkpoint shared by every node ("" = the packaged default);
                         # a relative path is relative to this file
    quality: 1           # encoders' quality (a camera may override it)
    device: cpu          # every node's device (encoder/decoder sections may override it)
    encoder:             # encoder_node parameters shared by every camera
      max_rate: 15.0
    cameras:             # one encoder node per camera, each in its own namespace
      - name: cam0                       # required
        namespace: /cam0                 # default: /<name>
        input_topic: /cam0/image         # default: <namespace>/image (…/image/compressed
                                         # with input_transport: compressed)
        quality: 2                       # any other key: an encoder_node parameter
      - name: cam1
    decoder:             # decoder_node parameters (+ name, namespace)
      slop: 0.02
    replay:              # optional camera_replay_node publishing every camera's input_topic
      enabled: true      # default: true when the section is there (override: replay)
                         # (+ name, namespace; any other key: a replay parameter)
      source: synthetic

Every parameter name is checked against the node's table (``pipeline/parameters.py``)
and every value against its type, with errors naming the file and the key.
Launch arguments / command-line flags ``model``, ``quality``, ``device``, ``replay``
override the file (``device`` for every node, ``quality`` for every camera).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .parameters import DECODER, ENCODER, REPLAY, check_parameters

PACKAGE = "parahydra_ros"
ENCODER_NAME = "parahydra_encoder"
DECODER_NAME = "parahydra_decoder"
REPLAY_NAME = "camera_replay"
_TOP_KEYS = {"model", "quality", "device", "encoder", "cameras", "decoder", "replay"}
_SHARED = ("model", "quality", "device")  # top-level keys, not per-section


class PipelineConfigError(ValueError):
    """A pipeline YAML that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: what ``launch_ros.actions.Node`` and the launcher both take."""

    executable: str  # ros2 run parahydra_ros <executable>; also parahydra_ros.ros.<executable>
    name: str
    namespace: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    package: str = PACKAGE

    def __post_init__(self) -> None:
        # An empty list equals every array parameter's default, and "[]" in a params
        # file has no type (rclpy would read a byte array): leave those out.
        object.__setattr__(self, "parameters",
                           {k: v for k, v in self.parameters.items() if not (isinstance(v, list) and not v)})

    @property
    def module(self) -> str:
        """The Python module whose ``main`` runs this node."""
        return f"parahydra_ros.ros.{self.executable}"

    @property
    def fully_qualified_name(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class Pipeline:
    """The nodes of one pipeline file, in start order (replay, encoders, decoder)."""

    source: Path
    nodes: tuple[NodeSpec, ...]

    @property
    def cameras(self) -> list[str]:
        return [n.parameters["camera_name"] for n in self.nodes if n.executable == "encoder_node"]


def config_dirs() -> list[Path]:
    """Where bare config names are looked up: the installed share folder, then this source tree's."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "config")
    except Exception:  # noqa: BLE001 - not installed, or no ament index: the source tree only
        pass
    dirs.append(Path(__file__).resolve().parents[2] / "config")
    return dirs


def resolve_config(name: str | Path) -> Path:
    """A config file: ``name`` if it exists, else ``<config dir>/name[.yaml]`` (e.g. ``stereo``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    if not path.is_absolute() and len(path.parts) == 1:
        for folder in config_dirs():
            for candidate in (folder / path, folder / f"{path}.yaml"):
                if candidate.is_file():
                    return candidate
    raise PipelineConfigError(f"{name}: no such pipeline config (looked in the current folder and "
                              f"{', '.join(str(d) for d in config_dirs())})")


def load_pipeline(path: str | Path, model: str | None = None, quality: int | None = None,
                  device: str | None = None, replay: bool | None = None) -> Pipeline:
    """Read and check a pipeline YAML; ``model``/``quality``/``device``/``replay`` (when not None) override it."""
    path = resolve_config(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise PipelineConfigError(f"{path}: not valid YAML: {error}") from None
    return build_pipeline(data, path, model=model, quality=quality, device=device, replay=replay)


def parse_overrides(model: str = "", quality: str = "", device: str = "", replay: str = "") -> dict[str, Any]:
    """Launch-argument strings (empty: no override) as ``load_pipeline`` keyword arguments."""
    out: dict[str, Any] = {"model": model or None, "quality": None, "device": device or None, "replay": None}
    flag = str(replay).strip().lower()
    if flag:
        if flag not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise PipelineConfigError(f"replay override must be true or false, got {replay!r}")
        out["replay"] = flag in ("true", "1", "yes", "on")
    if str(quality).strip():
        try:
            out["quality"] = int(quality)
        except ValueError:
            raise PipelineConfigError(f"quality override must be an integer, got {quality!r}") from None
    return out


def build_pipeline(data: Any, path: Path, model: str | None = None, quality: int | None = None,
                   device: str | None = None, replay: bool | None = None) -> Pipeline:
    """The nodes of an already-parsed pipeline YAML (see ``load_pipeline``)."""
    where = str(path)
    data = _mapping(data, where, "the file")
    _no_unknown(data, _TOP_KEYS, where, "top level")
    shared = {key: ENCODER[key].check(data[key], f"{where}: {key}") for key in _SHARED if key in data}
    if shared.get("model"):
        shared["model"] = _relative_to(shared["model"], path)
    overrides: dict[str, Any] = {}  # beat every value of the file
    if model is not None:
        overrides["model"] = str(Path(model).expanduser().resolve()) if model else ""
    if quality is not None:
        overrides["quality"] = ENCODER["quality"].check(quality, "quality override")
    if device is not None:
        overrides["device"] = ENCODER["device"].check(device, "device override")

    encoder_common = _section(data.get("encoder", {}), ENCODER, f"{where}: encoder", reserved=("camera_name",))
    cameras = data.get("cameras")
    if not isinstance(cameras, list) or not cameras:
        raise PipelineConfigError(f"{where}: 'cameras' must be a non-empty list")
    nodes: list[NodeSpec] = []
    camera_inputs: list[tuple[str, str, str]] = []  # name, namespace, input topic
    for i, camera in enumerate(cameras):
        cwhere = f"{where}: cameras[{i}]"
        camera = _mapping(camera, cwhere, "a camera")
        name = camera.get("name")
        if not isinstance(name, str) or not name.strip("/"):
            raise PipelineConfigError(f"{cwhere}: 'name' (a non-empty string) is required")
        name = name.strip("/")
        namespace = _namespace(camera.get("namespace", f"/{name}"), cwhere)
        own = _section({k: v for k, v in camera.items() if k not in ("name", "namespace", "input_topic")},
                       ENCODER, cwhere, reserved=("camera_name",))
        # top level < encoder section < this camera < overrides
        params = {**shared, **encoder_common, **own, **overrides, "camera_name": name}
        transport = params.get("input_transport", ENCODER["input_transport"].default)
        node_topic = "image/compressed" if transport == "compressed" else "image"
        input_topic = camera.get("input_topic", f"{namespace.rstrip('/')}/{node_topic}")
        if not isinstance(input_topic, str) or not input_topic:
            raise PipelineConfigError(f"{cwhere}: input_topic must be a topic name")
        camera_inputs.append((name, namespace, input_topic))
        nodes.append(NodeSpec("encoder_node", ENCODER_NAME, namespace, params,
                              ((node_topic, input_topic),)))
    names = [c[0] for c in camera_inputs]
    if len(set(names)) != len(names):
        raise PipelineConfigError(f"{where}: camera names repeat: {names}")
    if len({c[1] for c in camera_inputs}) != len(camera_inputs):
        raise PipelineConfigError(f"{where}: every camera needs its own namespace")

    decoder = _mapping(data.get("decoder", {}), f"{where}: decoder", "the decoder section")
    dparams = _section({k: v for k, v in decoder.items() if k not in ("name", "namespace")},
                       DECODER, f"{where}: decoder", reserved=())
    # top level < decoder section < overrides; the model is always the encoders' one
    dparams = {**{k: v for k, v in shared.items() if k == "device"}, **dparams,
               **{k: v for k, v in overrides.items() if k == "device"}}
    if "model" in overrides or "model" in shared:
        dparams["model"] = overrides.get("model", shared.get("model"))
    if not dparams.get("input_topics") and not dparams.get("cameras"):
        dparams["cameras"] = [c[1] for c in camera_inputs]
    dname = decoder.get("name", DECODER_NAME)
    replay_nodes = _replay(data.get("replay"), camera_inputs, nodes, where, path, replay)
    nodes.append(NodeSpec("decoder_node", str(dname), _namespace(decoder.get("namespace", "/"), where), dparams))
    return Pipeline(source=path, nodes=tuple(replay_nodes + nodes))


def _replay(section: Any, camera_inputs: list[tuple[str, str, str]], encoders: list[NodeSpec],
            where: str, path: Path, override: bool | None) -> list[NodeSpec]:
    rwhere = f"{where}: replay"
    section = _mapping(section, rwhere, "the replay section")
    enabled = section.get("enabled", bool(section))
    if not isinstance(enabled, bool):
        raise PipelineConfigError(f"{rwhere}: enabled must be true or false")
    if not (enabled if override is None else override):
        return []
    params = _section({k: v for k, v in section.items() if k not in ("enabled", "name", "namespace")},
                      REPLAY, rwhere, reserved=("cameras",))
    for spec in encoders:
        if spec.parameters.get("input_transport") == "compressed":
            raise PipelineConfigError(f"{rwhere}: the replay publishes raw images, but camera "
                                      f"{spec.parameters['camera_name']} takes compressed ones")
    if params.get("source", "synthetic") != "synthetic":
        params["source"] = _relative_to(params["source"], path)
    params["cameras"] = [name for name, _, _ in camera_inputs]
    namespace = _namespace(section.get("namespace", "/"), rwhere)
    remaps = []
    for name, _, topic in camera_inputs:
        published = f"{namespace.rstrip('/')}/{name}/image"
        if topic != published:
            remaps.append((f"{name}/image", topic))
    return [NodeSpec("camera_replay_node", str(section.get("name", REPLAY_NAME)), namespace, params,
                     tuple(remaps))]


def _section(values: Any, table: Mapping[str, Any], where: str, reserved: tuple[str, ...]) -> dict[str, Any]:
    values = _mapping(values, where, "a section")
    for key in values:
        if key == "model":
            raise PipelineConfigError(f"{where}: set 'model' at the top level (every node must hold "
                                      "the same model)")
        if key in reserved:
            raise PipelineConfigError(f"{where}: {key!r} is set by the pipeline, not here")
    try:
        return check_parameters(table, values, where)
    except ValueError as error:
        raise PipelineConfigError(str(error)) from None


def _mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PipelineConfigError(f"{where}: {what} must be a mapping, got {type(value).__name__}")
    return value


def _no_unknown(data: Mapping[str, Any], known: set[str], where: str, what: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise PipelineConfigError(f"{where}: unknown key(s) {unknown} at the {what} "
                                  f"(known: {', '.join(sorted(known))})")


def _namespace(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise PipelineConfigError(f"{where}: namespace must be absolute (start with '/'), got {value!r}")
    return value.rstrip("/") or "/"


def _relative_to(value: str, config: Path) -> str:
    """A path from the YAML: absolute as is; relative to the YAML's folder otherwise."""
    candidate = Path(value).expanduser()
    return str(candidate if candidate.is_absolute() else (config.parent / candidate).resolve())

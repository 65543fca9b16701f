"""Pipeline YAML, launch file and ``parahydra launch``: one config, the same nodes, no orphans."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import yaml

from parahydra_ros.pipeline.launcher import ProcessGroup, node_command, write_params_file
from parahydra_ros.pipeline.parameters import NODES
from parahydra_ros.pipeline.config import PipelineConfigError, build_pipeline, load_pipeline

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("pipeline_3cam", "stereo")


# -- the YAML -----------------------------------------------------------------------------------
def test_pipeline_3cam_describes_three_encoders_a_decoder_and_a_replay():
    pipeline = load_pipeline(REPO / "config" / "pipeline_3cam.yaml")
    assert [n.executable for n in pipeline.nodes] == ["camera_replay_node"] + ["encoder_node"] * 3 + ["decoder_node"]
    replay, *encoders, decoder = pipeline.nodes
    assert [(e.namespace, e.name, e.remappings) for e in encoders] == [
        (f"/cam{i}", "parahydra_encoder", (("image", f"/cam{i}/image"),)) for i in range(3)]
    assert all(e.parameters["quality"] == 3 and e.parameters["device"] == "cpu" for e in encoders)
    assert pipeline.cameras == ["cam0", "cam1", "cam2"]
    assert decoder.parameters["cameras"] == ["/cam0", "/cam1", "/cam2"] and decoder.parameters["device"] == "auto"
    assert replay.parameters["cameras"] == ["cam0", "cam1", "cam2"] and replay.remappings == ()
    for node in pipeline.nodes:
        assert set(node.parameters) <= set(NODES[node.executable]), node


def test_stereo_remaps_the_driver_topics_and_overrides_win():
    pipeline = load_pipeline("stereo", model="ckpt.pt", quality=3, device="cuda", replay=False)
    assert [n.executable for n in pipeline.nodes] == ["encoder_node", "encoder_node", "decoder_node"]
    left, right, decoder = pipeline.nodes
    assert left.namespace == "/stereo/left" and left.remappings == (("image", "/stereo/left/image_raw"),)
    assert right.parameters["camera_name"] == "right"
    model = str(Path("ckpt.pt").resolve())
    for node in (left, right):
        assert (node.parameters["quality"], node.parameters["device"], node.parameters["model"]) == (3, "cuda", model)
    assert decoder.parameters["device"] == "cuda" and decoder.parameters["model"] == model
    assert decoder.parameters["slop"] == 0.005
    replay = load_pipeline("stereo").nodes[0]
    assert replay.remappings == (("left/image", "/stereo/left/image_raw"), ("right/image", "/stereo/right/image_raw"))


def test_precedence_relative_paths_and_compressed_inputs(tmp_path):
    data = {
        "model": "weights/m.pt", "quality": 1, "device": "cpu",
        "encoder": {"quality": 2, "max_rate": 5},
        "cameras": [{"name": "a"}, {"name": "b", "quality": 3, "namespace": "/robot/b"},
                    {"name": "c", "input_transport": "compressed"}],
        "decoder": {"device": "auto", "slop": 1},
    }
    pipeline = build_pipeline(data, tmp_path / "p.yaml")
    a, b, c, decoder = pipeline.nodes
    assert a.parameters["quality"] == 2 and b.parameters["quality"] == 3  # camera > encoder > top level
    assert a.parameters["max_rate"] == 5.0 and isinstance(a.parameters["max_rate"], float)
    assert a.parameters["model"] == str(tmp_path / "weights" / "m.pt")  # relative to the YAML
    assert b.namespace == "/robot/b" and b.remappings == (("image", "/robot/b/image"),)
    assert c.remappings == (("image/compressed", "/c/image/compressed"),)
    assert decoder.parameters["cameras"] == ["/a", "/robot/b", "/c"] and decoder.parameters["slop"] == 1.0
    assert decoder.parameters["device"] == "auto" and decoder.parameters["model"] == a.parameters["model"]
    assert build_pipeline(data, tmp_path / "p.yaml", quality=0).nodes[1].parameters["quality"] == 0


@pytest.mark.parametrize("change, message", [
    ({"camras": []}, r"unknown key\(s\) \['camras'\]"),
    ({"cameras": []}, "'cameras' must be a non-empty list"),
    ({"cameras": [{"name": "a", "qualty": 2}]}, r"cameras\[0\]: unknown parameter 'qualty'"),
    ({"cameras": [{"name": "a", "quality": "high"}]}, r"cameras\[0\]: parameter 'quality' must be of type integer"),
    ({"cameras": [{"name": "a", "model": "x.pt"}]}, r"cameras\[0\]: set 'model' at the top level"),
    ({"cameras": [{"name": "a"}, {"name": "a", "namespace": "/b"}]}, "camera names repeat"),
    ({"cameras": [{"name": "a", "namespace": "a"}]}, "namespace must be absolute"),
    ({"decoder": {"partial_deadline": "soon"}}, r"decoder: parameter 'partial_deadline' must be of type double"),
    ({"replay": {"cameras": ["x"]}}, r"replay: 'cameras' is set by the pipeline"),
    ({"replay": {"enabled": True}, "cameras": [{"name": "a", "input_transport": "compressed"}]},
     "the replay publishes raw images"),
])
def test_config_errors_name_the_file_and_the_key(tmp_path, change, message):
    data = {"cameras": [{"name": "a"}], **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PipelineConfigError, match=message) as info:
        load_pipeline(path)
    assert str(path) in str(info.value)


def test_params_files_and_commands_are_what_ros2_launch_would_pass(tmp_path):
    encoder = load_pipeline("pipeline_3cam").nodes[1]
    params = write_params_file(encoder, tmp_path)
    assert yaml.safe_load(params.read_text()) == {"/**": {"ros__parameters": encoder.parameters}}
    argv = node_command(encoder, params, python="python3")
    assert argv == ["python3", "-m", "parahydra_ros.ros.encoder_node", "--ros-args", "-r",
                    "__node:=parahydra_encoder", "-r", "__ns:=/cam0", "--params-file", str(params),
                    "-r", "image:=/cam0/image"]


# -- the launch file -----------------------------------------------------------------------------
def _executables():
    """Node executables the package installs, by all three routes."""
    cmake = (REPO / "CMakeLists.txt").read_text()
    programs = set(re.findall(r"scripts/(\w+_node)", cmake))
    setup = (REPO / "setup.py").read_text()
    console = set(re.findall(r'"(\w+_node) = parahydra_ros\.ros\.(\w+):main"', setup))
    assert all(module == name for name, module in console)
    return programs & {name for name, _ in console}


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


def _load_launch_file(monkeypatch):
    """Import launch/pipeline.launch.py against recording stand-ins for launch and launch_ros."""
    stand_ins = {
        "launch": {"LaunchDescription": _Recorder},
        "launch.actions": {"DeclareLaunchArgument": _Recorder, "OpaqueFunction": _Recorder},
        "launch.substitutions": {"LaunchConfiguration": _LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Recorder},
    }
    for name, attributes in stand_ins.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("pipeline_launch", REPO / "launch" / "pipeline.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("overrides, cameras, replay", [
    ({}, 3, True),
    ({"config": "stereo", "quality": "3", "device": "cpu", "replay": "false"}, 2, False),
])
def test_launch_file_starts_existing_executables_with_declared_parameters(monkeypatch, overrides, cameras, replay):
    module = _load_launch_file(monkeypatch)
    description = module.generate_launch_description()
    (entities,) = description.args
    arguments = {e.args[0]: e.kwargs["default_value"] for e in entities if "default_value" in e.kwargs}
    assert set(arguments) == {"config", "model", "quality", "device", "replay"}
    assert all(e.kwargs.get("description") for e in entities if "default_value" in e.kwargs)
    (opaque,) = [e for e in entities if "function" in e.kwargs]
    nodes = opaque.kwargs["function"]({**arguments, **overrides})
    executables = _executables()
    assert {"encoder_node", "decoder_node", "camera_replay_node"} <= executables
    started = [n.kwargs["executable"] for n in nodes]
    assert started.count("encoder_node") == cameras and started.count("decoder_node") == 1
    assert ("camera_replay_node" in started) == replay
    for node in nodes:
        kwargs = node.kwargs
        assert kwargs["package"] == "parahydra_ros" and kwargs["executable"] in executables
        script = REPO / "scripts" / kwargs["executable"]
        assert script.is_file() and os.access(script, os.X_OK)
        assert f"parahydra_ros.ros.{kwargs['executable']} import main" in script.read_text()
        (parameters,) = kwargs["parameters"]
        assert set(parameters) <= set(NODES[kwargs["executable"]]), kwargs["executable"]
        assert kwargs["namespace"].startswith("/") and kwargs["name"]
        if "quality" in overrides and kwargs["executable"] == "encoder_node":
            assert parameters["quality"] == 3
    for executable in {n.kwargs["executable"] for n in nodes}:
        module = importlib.import_module(f"parahydra_ros.ros.{executable}")
        assert callable(module.main) and module.NODE_PARAMETERS is NODES[executable]


def test_launch_file_with_real_ros_launch():
    pytest.importorskip("launch_ros")  # only on a real ROS install (the repo's launch/ folder
    launch = pytest.importorskip("launch")  # would otherwise import as a namespace package)
    spec = importlib.util.spec_from_file_location("pipeline_launch_real", REPO / "launch" / "pipeline.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = launch.LaunchContext()
    for entity in description.entities:
        if isinstance(entity, launch.actions.DeclareLaunchArgument):
            context.launch_configurations[entity.name] = entity.default_value[0].perform(context)
    (opaque,) = [e for e in description.entities if isinstance(e, launch.actions.OpaqueFunction)]
    nodes = opaque.execute(context)
    assert len(nodes) == 5


# -- the process group ---------------------------------------------------------------------------
def _python(code):
    return [sys.executable, "-c", textwrap.dedent(code)]


def _wait_for(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_stop_escalates_to_sigterm_and_sigkill(tmp_path):
    stubborn = _python(f"""
        import signal, time, pathlib
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(tmp_path / 'stubborn')!r}).touch()
        time.sleep(60)
    """)
    polite = _python(f"""
        import pathlib, time
        pathlib.Path({str(tmp_path / 'polite')!r}).touch()
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            pass
    """)
    group = ProcessGroup(stop_timeout=0.5)
    children = [group.start("polite", polite), group.start("stubborn", stubborn)]
    try:
        _wait_for(tmp_path / "polite")
        _wait_for(tmp_path / "stubborn")
        start = time.monotonic()
        assert group.stop() == 1  # not clean: one needed SIGKILL
        assert time.monotonic() - start < 5
        assert children[0].process.returncode == 0 and children[1].process.returncode == -signal.SIGKILL
    finally:
        for child in children:
            if child.process.poll() is None:
                child.process.kill()


def test_a_failing_node_stops_the_others(tmp_path):
    group = ProcessGroup(stop_timeout=2.0)
    sleeper = group.start("sleeper", _python("import time; time.sleep(60)"))
    group.start("failing", _python("import sys; sys.exit(3)"))
    try:
        assert group.run(poll=0.05) == 1
        assert group.failed == ["failing"] and sleeper.process.poll() is not None
    finally:
        if sleeper.process.poll() is None:
            sleeper.process.kill()


def test_nodes_stop_on_sigint_when_the_launcher_inherited_it_ignored(tmp_path):
    """A launcher run in the background of a script gets SIGINT ignored; its nodes must not."""
    ready = tmp_path / "ready"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        group = ProcessGroup(stop_timeout=20.0)
        child = group.start("node", _python(f"""
            import pathlib, time
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(60)
        """))
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        _wait_for(ready)
        start = time.monotonic()
        assert group.stop() == 0
        assert child.process.returncode == -signal.SIGINT and time.monotonic() - start < 10  # no SIGTERM
    finally:
        if child.process.poll() is None:
            child.process.kill()


def test_children_die_with_a_killed_launcher(tmp_path):
    pid_file = tmp_path / "child.pid"
    launcher = subprocess.Popen(_python(f"""
        import pathlib, sys, time
        from parahydra_ros.pipeline.launcher import ProcessGroup
        child = ProcessGroup().start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))
        time.sleep(60)
    """), cwd=REPO)
    try:
        _wait_for(pid_file)
        child = int(pid_file.read_text())
        launcher.kill()  # SIGKILL: no chance to clean up
        launcher.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the child outlived its killed launcher"
            time.sleep(0.05)
    finally:
        if launcher.poll() is None:
            launcher.kill()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- parahydra launch, end to end ------------------------------------------------------------------
@pytest.mark.ros
@pytest.mark.slow
def test_parahydra_launch_runs_and_stops_a_three_camera_pipeline(tmp_path, ros_context):
    """`parahydra launch` starts 3 encoders + 1 decoder as processes; images published here come back
    reconstructed; Ctrl-C stops every node cleanly within ``ros2 launch``'s 5 s SIGINT timeout and
    leaves no process behind. The Ctrl-C is a terminal's under ``ros2 launch`` (whose nodes share its
    process group): SIGINT to every node and to the launcher, and a second one while they stop,
    which used to abort a node inside a torch op (SIGABRT) and needed SIGTERM for the rest."""
    psutil = pytest.importorskip("psutil")
    import numpy as np
    import torch
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from parahydra_ros.codec.checkpoint import save_checkpoint
    from parahydra_ros.model.configs import get_config
    from parahydra_ros.model.parahydra import ParaHydra
    from parahydra_ros.codec.image_conversions import pixels_to_image

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pt", ParaHydra(get_config("tiny")), name="tiny-test")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "model": "tiny.pt",  # relative to the YAML
        "quality": 1,
        "device": "cpu",
        "cameras": [{"name": f"cam{i}", "input_topic": f"/rig/cam{i}/image_raw"} for i in range(3)],
        "decoder": {"device": "cpu"},
    }))
    cameras = [f"cam{i}" for i in range(3)]
    received = {camera: [] for camera in cameras}
    probe = Node("launch_probe", context=ros_context)
    inputs = [probe.create_publisher(Image, f"/rig/{camera}/image_raw", 10) for camera in cameras]
    for camera, messages in received.items():
        probe.create_subscription(Image, f"/{camera}/image_reconstructed", messages.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(probe)
    pixels = np.random.default_rng(0).integers(0, 256, (120, 180, 3), dtype=np.uint8)
    fields = pixels_to_image(pixels, "bgr8")
    log = tmp_path / "launch.log"
    with open(log, "wb") as out:
        launcher = subprocess.Popen([sys.executable, "-m", "parahydra_ros.cli", "launch", str(config),
                                     "--stop-timeout", "5"], cwd=REPO, env=dict(os.environ),
                                    stdout=out, stderr=subprocess.STDOUT)
    nodes, sent = [], set()
    try:
        deadline = time.monotonic() + 150
        next_group = 0.0
        while not all(received.values()):
            assert launcher.poll() is None, f"launcher exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no reconstructed images:\n{log.read_text()[-3000:]}"
            if time.monotonic() > next_group:  # a group every 0.4 s until the pipeline is up
                stamp = probe.get_clock().now().to_msg()
                sent.add((stamp.sec, stamp.nanosec))
                for camera, publisher in zip(cameras, inputs):
                    msg = Image(height=120, width=180, encoding="bgr8", step=fields["step"], data=fields["data"])
                    msg.header.stamp, msg.header.frame_id = stamp, camera
                    publisher.publish(msg)
                next_group = time.monotonic() + 0.4
            executor.spin_once(timeout_sec=0.05)
        nodes = psutil.Process(launcher.pid).children(recursive=True)
        assert sorted(" ".join(n.cmdline()).split(" -m ")[1].split()[0] for n in nodes) == [
            "parahydra_ros.ros.decoder_node"] + ["parahydra_ros.ros.encoder_node"] * 3
        for camera, messages in received.items():
            image = messages[0]
            assert (image.height, image.width, image.encoding, image.header.frame_id) == (120, 180, "bgr8", camera)
            assert (image.header.stamp.sec, image.header.stamp.nanosec) in sent
        for publisher in inputs:  # one more group, so that the encoders are coding it
            msg = Image(height=120, width=180, encoding="bgr8", step=fields["step"], data=fields["data"])
            msg.header.stamp = probe.get_clock().now().to_msg()
            publisher.publish(msg)
        time.sleep(0.05)
        for step in range(2):
            for node in nodes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGINT)
            if step == 0:
                launcher.send_signal(signal.SIGINT)
            time.sleep(0.1)
        assert launcher.wait(timeout=40) == 0, log.read_text()[-3000:]
        gone, alive = psutil.wait_procs(nodes, timeout=5)
        assert not alive, f"orphans: {[p.pid for p in alive]}"
    finally:
        executor.shutdown()
        probe.destroy_node()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(10)
        for node in nodes:
            if node.is_running():
                node.kill()
    text = log.read_text()
    assert text.count("[launch] started") == 4
    assert "received SIGINT: stopping" in text and "SIGTERM" not in text and "SIGKILL" not in text
    assert "Traceback" not in text and "[ERROR]" not in text and "terminate called" not in text

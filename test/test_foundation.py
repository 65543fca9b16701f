"""The package builds its message, exchanges it over real DDS, and its core needs no ROS."""
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _exchange(context, msg_type, topic: str, message, timeout: float = 10.0):
    """Publish ``message`` from one node and return what another node receives."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    publisher_node = Node("test_publisher", context=context)
    subscriber_node = Node("test_subscriber", context=context)
    received = []
    subscriber_node.create_subscription(msg_type, topic, received.append, 10)
    publisher = publisher_node.create_publisher(msg_type, topic, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(publisher_node)
    executor.add_node(subscriber_node)
    deadline = time.monotonic() + timeout
    try:
        while not received and time.monotonic() < deadline:
            publisher.publish(message)
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        publisher_node.destroy_node()
        subscriber_node.destroy_node()
    assert received, f"nothing arrived on {topic} within {timeout} s"
    return received[0]


@pytest.mark.ros
def test_compressed_latent_round_trips_over_dds(ros_context):
    from parahydra_ros.msg import CompressedLatent

    msg = CompressedLatent()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, 123_456_789
    msg.header.frame_id = "cam1_optical"
    msg.camera = "cam1"
    msg.frame_index = 2**40 + 7
    msg.height, msg.width, msg.encoding = 480, 640, "bgr8"
    msg.model_name, msg.model_hash, msg.quality = "parahydra-small", "0123456789abcdef", 3
    msg.format_version = 1
    payload = bytes(range(256)) * 40 + b"\x00\xff"
    msg.payload = payload
    msg.payload_size = len(payload)
    msg.bits_per_pixel = 0.265625  # exact in float32, like every float32 field here
    msg.encode_time_ms = 12.5

    got = _exchange(ros_context, CompressedLatent, "/parahydra_test/latent", msg)

    for field in CompressedLatent.get_fields_and_field_types():
        assert getattr(got, field) == getattr(msg, field), field
    assert bytes(got.payload) == payload


@pytest.mark.ros
def test_image_round_trips_over_dds(ros_context):
    import numpy as np
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    msg = Image(height=48, width=64, encoding="rgb8", is_bigendian=0, step=64 * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 42, 999
    msg.header.frame_id = "cam0"
    msg.data = pixels.tobytes()

    got = _exchange(ros_context, Image, "/parahydra_test/image", msg)

    assert (got.header.stamp.sec, got.header.stamp.nanosec, got.header.frame_id) == (42, 999, "cam0")
    assert (got.height, got.width, got.encoding, got.step) == (48, 64, "rgb8", 192)
    assert np.array_equal(np.frombuffer(bytes(got.data), np.uint8).reshape(48, 64, 3), pixels)


def ros_free_modules() -> list[str]:
    """Every module of the package outside ``ros/`` and the ROS demo (``demo/``), by its sources."""
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    graph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph)
    return [name for name in graph.modules() if "." in name and graph.folder(name) not in graph.ROS_FOLDERS]


BLOCK_ROS = """
import importlib.abc, sys
ROS = ("rclpy", "rosidl", "rmw", "ament_index_python", "sensor_msgs", "std_msgs",
       "builtin_interfaces", "diagnostic_msgs", "message_filters", "parahydra_ros.msg", "parahydra_ros.ros")
class BlockROS(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(ROS):
            raise ImportError(f"ROS module {name} imported outside ros/")
sys.meta_path.insert(0, BlockROS())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
assert not [m for m in sys.modules if m.startswith(ROS)]
print("ok")
"""


def test_codec_core_imports_without_ros():
    """Every module outside ``ros/`` and ``demo/`` (model, codec, sync, pipeline, bagtools, data,
    eval, the CLI and tools) imports with ROS and ``parahydra_ros.ros`` blocked."""
    modules = ros_free_modules()
    assert {"parahydra_ros.bagtools.compress", "parahydra_ros.data.bag_groups", "parahydra_ros.eval.report",
            "parahydra_ros.sync.grouping", "parahydra_ros.pipeline.launcher", "parahydra_ros.cli"} <= set(modules)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMENT", "ROS_", "RMW"))}
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_ROS, *modules], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.ros
def test_share_directory_holds_package_files():
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    share = Path(get_package_share_directory("parahydra_ros"))
    assert (share / "package.xml").is_file()
    assert (share / "launch").is_dir() and any((share / "launch").iterdir())
    assert (share / "config").is_dir() and any((share / "config").glob("*.yaml"))
    executables = Path(get_package_prefix("parahydra_ros")) / "lib" / "parahydra_ros"
    for node in ("encoder_node", "decoder_node", "camera_replay_node"):
        assert os.access(executables / node, os.X_OK), node

"""Shared test set-up: DDS stays on this machine, in a domain of this run's own."""
import os

# Before anything imports rclpy: discovery on loopback only, and a per-run
# domain (scripts/run_tests.sh picks one; a bare `pytest` gets one from the pid).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def ros_context():
    """An initialised rclpy context of the test's own, shut down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()

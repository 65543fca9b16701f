"""The decoder's subscriptions into ``sync.CameraGrouper`` (``ros/sync.py``), over real rclpy and DDS
confined to this machine."""
import os
import random
import time

import pytest

# Before rclpy starts a participant (test/conftest.py does the same): loopback
# discovery only, and a domain of this run's own.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))

pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from parahydra_ros.ros.sync import header_stamp_ns, subscribe_grouped  # noqa: E402
from parahydra_ros.sync import CameraGrouper, SyncSettings  # noqa: E402

TOPICS = ["cam0/latent", "cam1/latent", "cam2/latent"]
FRAMES = 20
SLOP = 0.020  # s
PERIOD_NS = 33_333_333
T0_NS = 1_700_000_000 * 1_000_000_000
QOS = QoSProfile(depth=3 * FRAMES, reliability=ReliabilityPolicy.RELIABLE)


def spin_until(executor, done, timeout):
    """Spin ``executor`` until ``done()`` or ``timeout`` seconds; return ``done()``."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return done()


def image(stamp_ns, camera, frame):
    """A tiny Image stamped ``stamp_ns`` whose frame_id names its camera and frame."""
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = f"{camera}:{frame}"
    return msg


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_three_topics_are_grouped_over_dds_and_a_stalled_one_partially(ros_context):
    publisher_node = Node("sync_test_cameras", context=ros_context)
    decoder_node = Node("sync_test_decoder", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(publisher_node)
    executor.add_node(decoder_node)
    grouper = CameraGrouper(len(TOPICS), SyncSettings(slop=SLOP, queue_size=10, deadline=0.5), capacity=64)
    try:
        publishers = [publisher_node.create_publisher(Image, topic, QOS) for topic in TOPICS]
        sets, per_message = [], []
        subscriptions = subscribe_grouped(decoder_node, Image, TOPICS, QOS, grouper, on_group=sets.append,
                                          on_message=lambda i, msg: per_message.append(i))
        assert [s.topic_name for s in subscriptions] == ["/" + t for t in TOPICS]

        matched = spin_until(
            executor,
            lambda: all(p.get_subscription_count() for p in publishers)
            and all(s.get_publisher_count() for s in subscriptions),
            timeout=10,
        )
        assert matched, "publishers and subscriptions did not discover each other"

        rng = random.Random(1)
        sent = {}
        for frame in range(FRAMES):
            order = list(range(len(TOPICS)))
            rng.shuffle(order)
            for camera in order:
                if camera == 2 and frame == FRAMES - 1:
                    continue  # camera 2 stalls on the last frame
                stamp = T0_NS + frame * PERIOD_NS + rng.randint(-5_000_000, 5_000_000)
                sent[camera, frame] = stamp
                publishers[camera].publish(image(stamp, camera, frame))
            executor.spin_once(timeout_sec=0)
        assert spin_until(executor, lambda: len(sets) == FRAMES - 1, timeout=10), f"{len(sets)} sets"
        assert spin_until(executor, lambda: len(per_message) == len(sent), timeout=10)
        time.sleep(0.6)  # past the deadline: the last frame's two views come out partially
        partial = grouper.poll(time.monotonic()).groups
    finally:
        executor.shutdown()
        publisher_node.destroy_node()
        decoder_node.destroy_node()

    assert sorted(per_message) == sorted(c for c, _ in sent)
    fired_frames = []
    for group in sets:
        assert group.complete
        names = [msg.header.frame_id.split(":") for msg in group.items]
        assert [int(camera) for camera, _ in names] == [0, 1, 2]
        frames = {int(frame) for _, frame in names}
        assert len(frames) == 1, f"a set mixes frames {frames}"
        frame = frames.pop()
        assert [header_stamp_ns(msg) for msg in group.items] == [sent[c, frame] for c in range(3)]
        assert group.stamps == tuple(sent[c, frame] for c in range(3))
        fired_frames.append(frame)
    assert sorted(fired_frames) == list(range(FRAMES - 1))
    assert len(partial) == 1 and partial[0].members == (0, 1)
    assert [msg.header.frame_id for msg in partial[0].items[:2]] == [f"{c}:{FRAMES - 1}" for c in (0, 1)]

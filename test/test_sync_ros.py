"""The message_filters fallback over real rclpy and DDS, confined to this machine."""
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
from std_msgs.msg import String  # noqa: E402

from parahydra_ros.ros.sync import (  # noqa: E402
    USING_MESSAGE_FILTERS,
    ApproximateTimeSynchronizer,
    SimpleFilter,
    Subscriber,
    header_stamp_ns,
    make_synchronizer,
)

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
def test_fallback_synchronizes_three_topics_over_dds(ros_context):
    publisher_node = Node("sync_test_cameras", context=ros_context)
    decoder_node = Node("sync_test_decoder", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(publisher_node)
    executor.add_node(decoder_node)
    try:
        publishers = [publisher_node.create_publisher(Image, topic, QOS) for topic in TOPICS]
        subscribers = [Subscriber(decoder_node, Image, topic, qos_profile=QOS) for topic in TOPICS]
        synchronizer = ApproximateTimeSynchronizer(subscribers, queue_size=10, slop=SLOP)
        sets, per_message = [], []
        synchronizer.registerCallback(lambda *msgs: sets.append(msgs))
        for index, subscriber in enumerate(subscribers):
            subscriber.registerCallback(lambda msg, i: per_message.append(i), index)
        assert [s.getTopic() for s in subscribers] == TOPICS

        matched = spin_until(
            executor,
            lambda: all(p.get_subscription_count() for p in publishers)
            and all(s.get_publisher_count() for s in subscribers),  # served by the subscription
            timeout=10,
        )
        assert matched, "publishers and subscribers did not discover each other"

        rng = random.Random(1)
        sent = {}
        for frame in range(FRAMES):
            order = list(range(len(TOPICS)))
            rng.shuffle(order)
            for camera in order:
                stamp = T0_NS + frame * PERIOD_NS + rng.randint(-5_000_000, 5_000_000)
                sent[camera, frame] = stamp
                publishers[camera].publish(image(stamp, camera, frame))
            executor.spin_once(timeout_sec=0)
        assert spin_until(executor, lambda: len(sets) == FRAMES, timeout=10), f"{len(sets)} sets"
    finally:
        executor.shutdown()
        publisher_node.destroy_node()
        decoder_node.destroy_node()

    assert sorted(per_message) == sorted(list(range(len(TOPICS))) * FRAMES)
    fired_frames = []
    for msgs in sets:
        names = [msg.header.frame_id.split(":") for msg in msgs]
        assert [int(camera) for camera, _ in names] == [0, 1, 2]
        frames = {int(frame) for _, frame in names}
        assert len(frames) == 1, f"a set mixes frames {frames}"
        frame = frames.pop()
        assert [header_stamp_ns(msg) for msg in msgs] == [sent[c, frame] for c in range(3)]
        fired_frames.append(frame)
    assert sorted(fired_frames) == list(range(FRAMES))


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_make_synchronizer_falls_back_without_message_filters(ros_context):
    if USING_MESSAGE_FILTERS:
        pytest.skip("message_filters is installed: make_synchronizer uses it")
    node = Node("sync_test_factory", context=ros_context)
    try:
        synchronizer, subscribers = make_synchronizer(node, Image, TOPICS, QOS, queue_size=5, slop=SLOP)
        assert isinstance(synchronizer, ApproximateTimeSynchronizer)
        assert all(isinstance(s, Subscriber) for s in subscribers)
        assert [s.getTopic() for s in subscribers] == TOPICS
        assert sorted(name for name, _ in node.get_subscriber_names_and_types_by_node(
            "sync_test_factory", "/")) == sorted("/" + t for t in TOPICS)
    finally:
        node.destroy_node()


def test_headerless_messages_need_allow_headerless():
    for allow, expected in ((False, 0), (True, 1)):
        inputs = [SimpleFilter(), SimpleFilter()]
        synchronizer = ApproximateTimeSynchronizer(inputs, queue_size=5, slop=1.0, allow_headerless=allow)
        sets = []
        synchronizer.registerCallback(lambda *msgs: sets.append(msgs))
        inputs[0].signalMessage(String(data="a"))
        inputs[1].signalMessage(String(data="b"))
        assert len(sets) == expected

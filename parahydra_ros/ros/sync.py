"""The decoder's subscriptions: every camera's messages into one ``sync.CameraGrouper``.

The grouping itself is ROS-free and lives in ``sync/`` (message_filters'
approximate-time policy, partial groups past a deadline, missing cameras); it is the
very object ``parahydra bag`` groups a recording with, so a bag is grouped as the node
groups the live topics. This module only feeds it what a subscription delivers: the
message's ``header.stamp`` in nanoseconds and its arrival on ``time.monotonic()``.
Callbacks run in the executor thread that delivered the message: hand heavy work,
such as a neural decode, to a worker.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.time import Time

from ..sync import CameraGrouper, Group


def header_stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` in integer nanoseconds, as ``Time.from_msg(...).nanoseconds``."""
    stamp = msg.header.stamp
    return stamp.nanoseconds if isinstance(stamp, Time) else Time.from_msg(stamp).nanoseconds


def subscribe_grouped(node: Node, msg_type: type, topics: Sequence[str], qos_profile: QoSProfile | int,
                      grouper: CameraGrouper, on_group: Callable[[Group], None],
                      on_message: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Subscribe to ``topics`` (input ``i`` of ``grouper`` is ``topics[i]``); return the subscriptions.

    Every message is first given to ``on_message(index, msg)`` (optional), then to the
    grouper; a complete group it completes goes to ``on_group``. Partial groups come
    from ``grouper.poll``, which the caller runs on a timer.
    """
    def deliver(msg: Any, index: int) -> None:
        if on_message is not None:
            on_message(index, msg)
        group = grouper.add(index, header_stamp_ns(msg), time.monotonic(), msg)
        if group is not None:
            on_group(group)

    return [node.create_subscription(msg_type, topic, partial(deliver, index=index), qos_profile)
            for index, topic in enumerate(topics)]

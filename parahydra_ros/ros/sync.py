"""message_filters' ``Subscriber`` and ``ApproximateTimeSynchronizer``, or a fallback with the same API.

``message_filters`` is part of every ROS 2 install but not on PyPI.
``make_synchronizer`` builds from it when it imports and from the fallback here
otherwise, so callers never care. The fallback runs the same approximate-time
policy (``parahydra_ros.sync.ApproximateTimePolicy``) with one difference: it
calls the user callbacks after releasing its lock (message_filters holds it), so
a slow callback does not block the other inputs from being queued. Either way
the callback runs in the executor thread that delivered the completing message:
hand heavy work, such as a neural decode, to a worker.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import rclpy.logging
from rclpy.clock import ROSClock
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.time import Time

from parahydra_ros.sync import ApproximateTimePolicy

try:
    import message_filters
except ImportError:
    message_filters = None

USING_MESSAGE_FILTERS = message_filters is not None
"""Whether ``make_synchronizer`` builds from the real message_filters."""

_logger = rclpy.logging.get_logger("parahydra_ros.sync")


def header_stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` in integer nanoseconds, as ``Time.from_msg(...).nanoseconds``."""
    stamp = msg.header.stamp
    return stamp.nanoseconds if isinstance(stamp, Time) else Time.from_msg(stamp).nanoseconds


class SimpleFilter:
    """A message source other filters connect to, as ``message_filters.SimpleFilter``."""

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}

    def registerCallback(self, cb: Callable[..., Any], *args: Any) -> int:  # noqa: N802 (message_filters API)
        """Call ``cb(*outputs, *args)`` on every output; return the connection's id."""
        connection = len(self.callbacks)
        self.callbacks[connection] = (cb, args)
        return connection

    def signalMessage(self, *msg: Any) -> None:  # noqa: N802 (message_filters API)
        """Pass ``msg`` to every registered callback, in registration order."""
        for cb, args in list(self.callbacks.values()):
            cb(*(msg + args))


class Subscriber(SimpleFilter):
    """A ROS subscription as the first filter of a chain, as ``message_filters.Subscriber``."""

    def __init__(
        self,
        node: Node,
        msg_type: type,
        topic: str,
        qos_profile: QoSProfile | int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.node = node
        self.topic = topic
        self.sub = node.create_subscription(msg_type, topic, self.callback, qos_profile, **kwargs)

    def callback(self, msg: Any) -> None:
        """Pass a received message on to the connected filters."""
        self.signalMessage(msg)

    def getTopic(self) -> str:  # noqa: N802 (message_filters API)
        """The topic name as given."""
        return self.topic

    def __getattr__(self, key: str) -> Any:
        """Serve the wrapped subscription's attributes, as message_filters does."""
        if key == "sub":  # not yet set: do not recurse
            raise AttributeError(key)
        return getattr(self.sub, key)


class ApproximateTimeSynchronizer(SimpleFilter):
    """Calls back with one message per input whose header stamps lie within ``slop`` seconds.

    Same constructor and callback signature as message_filters':
    ``cb(msg_0, ..., msg_n_minus_1, *args)``. With ``allow_headerless`` a message
    without ``header.stamp`` is stamped with the ROS clock's time on arrival;
    without it such a message is dropped with a warning.
    """

    def __init__(
        self,
        fs: Sequence[SimpleFilter],
        queue_size: int,
        slop: float,
        allow_headerless: bool = False,
    ) -> None:
        super().__init__()
        self.queue_size = queue_size
        self.slop = slop
        self.allow_headerless = allow_headerless
        self._policy: ApproximateTimePolicy[Any] = ApproximateTimePolicy(len(fs), queue_size, slop)
        self.input_connections = [f.registerCallback(self.add, i) for i, f in enumerate(fs)]

    def add(self, msg: Any, index: int) -> None:
        """Queue ``msg`` of input ``index``; signal the set it completes, if any."""
        if hasattr(msg, "header") and hasattr(msg.header, "stamp"):
            stamp = header_stamp_ns(msg)
        elif self.allow_headerless:
            stamp = ROSClock().now().nanoseconds
        else:
            _logger.warning(
                f"dropping a {type(msg).__name__} on input {index}: it has no header.stamp "
                "and allow_headerless is off",
                once=True,
            )
            return
        group = self._policy.add(index, stamp, msg)
        if group is not None:
            self.signalMessage(*group.items)


def make_synchronizer(
    node: Node,
    msg_type: type,
    topics: Sequence[str],
    qos_profile: QoSProfile | int,
    queue_size: int,
    slop: float,
    allow_headerless: bool = False,
) -> tuple[Any, list[Any]]:
    """Subscribe to ``topics`` and approximately synchronize them; return ``(synchronizer, subscribers)``.

    Both come from message_filters where it imports (see ``USING_MESSAGE_FILTERS``),
    from this module otherwise. Register the set callback on the synchronizer;
    per-message callbacks (e.g. to feed a ``PartialGroupCollector``) on the subscribers.
    """
    if message_filters is not None:
        subscriber_type = message_filters.Subscriber
        synchronizer_type = message_filters.ApproximateTimeSynchronizer
    else:
        subscriber_type, synchronizer_type = Subscriber, ApproximateTimeSynchronizer
    subscribers = [subscriber_type(node, msg_type, topic, qos_profile=qos_profile) for topic in topics]
    synchronizer = synchronizer_type(subscribers, queue_size, slop, allow_headerless=allow_headerless)
    return synchronizer, subscribers

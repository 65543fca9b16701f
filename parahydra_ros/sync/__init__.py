"""Time synchronization of N camera streams, without ROS.

``ApproximateTimePolicy`` is message_filters' approximate-time policy;
``PartialGroupCollector`` gives out what a stalled input leaves waiting;
``group_by_time`` combines both for frames read offline. ``parahydra_ros.ros.sync``
puts them behind the message_filters API.
"""
from parahydra_ros.sync.approximate_time import ApproximateTimePolicy, Group, seconds_to_ns
from parahydra_ros.sync.offline import group_by_time
from parahydra_ros.sync.stragglers import PartialGroupCollector, PollResult

__all__ = [
    "ApproximateTimePolicy",
    "Group",
    "PartialGroupCollector",
    "PollResult",
    "group_by_time",
    "seconds_to_ns",
]

"""Time synchronization of N camera streams and the decoder's work queue, without ROS.

``ApproximateTimePolicy`` is message_filters' approximate-time policy;
``PartialGroupCollector`` gives out what a stalled input leaves waiting and
``MissingInputs`` says which inputs went missing; ``CameraGrouper`` combines them
with ``SyncSettings``, one object for the decoder node (``ros/decoder_node.py``) and
``group_by_time`` (frames read offline, e.g. from a rosbag). ``DropOldestWorker``
(``sync.worker``) runs the nodes' neural work off the ROS callbacks.
"""
from parahydra_ros.sync.approximate_time import ApproximateTimePolicy, Group, seconds_to_ns
from parahydra_ros.sync.grouping import CameraGrouper, SyncSettings
from parahydra_ros.sync.offline import group_by_time
from parahydra_ros.sync.stragglers import MissingInputs, PartialGroupCollector, PollResult

__all__ = [
    "ApproximateTimePolicy",
    "CameraGrouper",
    "Group",
    "MissingInputs",
    "PartialGroupCollector",
    "PollResult",
    "SyncSettings",
    "group_by_time",
    "seconds_to_ns",
]

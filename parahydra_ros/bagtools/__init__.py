"""Compress and decompress the camera topics of ROS bags offline, without ROS (``rosbags`` only).

Pixels ↔ payloads are the codec's (``codec/``: ``ParaHydraCodec``, image conversions, the
``CompressedLatent`` checks); frames are grouped by the decoder node's own grouping
(``sync/``). Nothing here imports ``ros/``. One job per module:

============  ====================================================================
messages      typestore (Kilted + ``CompressedLatent``), message building, pixels
topics        latent topic names and the image topics they restore
reading       open an input bag (rosbag2 MCAP/SQLite3, ROS 1), indexed messages
writing       the output under a temporary name, renamed on success; copied connections
cameras       camera frames of a bag and their groups, as the decoder groups them
compress      camera topics → ``CompressedLatent`` topics
decompress    ``CompressedLatent`` topics → ``sensor_msgs/Image`` topics
info          per-topic counts, sizes, model, quality and bits per pixel
summary       per-topic sizes and PSNR of a run, progress bar
errors        ``BagError`` and its kinds, naming file, topic and message
============  ====================================================================

``parahydra bag …`` (``parahydra_ros/bag.py``) is the command line over these.
"""
from .compress import compress_bag
from .decompress import decompress_bag
from .errors import BagError, BagReadError, FrameError, OutputError, TopicError
from .info import bag_info, format_info
from .summary import Summary, format_summary

__all__ = [
    "BagError",
    "BagReadError",
    "FrameError",
    "OutputError",
    "Summary",
    "TopicError",
    "bag_info",
    "compress_bag",
    "decompress_bag",
    "format_info",
    "format_summary",
]

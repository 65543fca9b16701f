"""Camera replay node: publishes multi-view groups as N synchronized camera streams.

    ros2 run parahydra_ros camera_replay_node --ros-args -p source:=/data/middlebury -p cameras:="[cam0, cam1]"

View ``i`` of every group is published as ``sensor_msgs/Image`` on ``<camera i>/image``
(relative), every view of a group with the same ``header.stamp`` (the ROS time of
publication) and ``frame_id`` ``<camera><frame_id_suffix>``, at ``rate`` groups per
second. Groups come from a folder ``ROOT/<group>/<view>.png`` (groups and views in
name order; ``extra/`` folders ignored) or, with ``source: synthetic``, from
``parahydra_ros.data.synthetic`` (a rig of cameras in a row moving slowly through
one textured scene with real parallax). ``muted_cameras`` (runtime)
silences cameras, to show what the decoder does when a camera stops. Used by the
demo, the launcher's pipelines and the tests.
"""
from __future__ import annotations

import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..codec import image_conversions as conv
from ..pipeline.parameters import REPLAY
from .qos import qos_profile
from .runtime import NodeSetupError, declare_parameters, format_values, run_node, string_array

NODE_PARAMETERS = REPLAY
"""This node's parameters: name → ``ParamSpec`` (default, type, description)."""

DEFAULT_NAME = "camera_replay"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff")


def folder_groups(root: Path, num_views: int) -> list[list[Path]]:
    """The view files of every group under ``root`` holding at least ``num_views`` images (name order)."""
    if not root.is_dir():
        raise NodeSetupError(f"source {str(root)!r} is neither 'synthetic' nor a folder")
    groups = []
    for group in sorted(p for p in root.iterdir() if p.is_dir()):
        views = sorted(p for p in group.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if len(views) >= num_views:
            groups.append(views[:num_views])
    if not groups:
        raise NodeSetupError(f"{root}: no group folder holds {num_views} or more images "
                             "(expected ROOT/<group>/<view>.png)")
    return groups


def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (or mono), as the codec takes it."""
    from ..codec.images import read_image  # torch only when a folder is replayed

    try:
        return read_image(path)
    except ValueError as error:
        raise NodeSetupError(str(error)) from None


def synthetic_views(num_views: int, height: int, width: int, seed: int,
                    frames: int = 200) -> Iterator[list[np.ndarray]]:
    """Endless groups from ``parahydra_ros.data.synthetic``: a rig of ``num_views`` cameras in a row
    moving slowly through one textured scene (``frames`` frames, then back and forth)."""
    from ..data.synthetic import SyntheticRig

    sequence = SyntheticRig(num_views, height, width).sequence(seed, frames)
    cycle = list(range(frames)) + list(range(frames - 2, 0, -1))
    while True:
        for frame in cycle:
            yield sequence.render(frame).views


class CameraReplayNode(Node):
    """Publishes one ``Image`` topic per camera, the views of a group with one stamp."""

    def __init__(self, node_name: str = DEFAULT_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, NODE_PARAMETERS)
        p = self.params
        self.cameras = [c.strip("/") for c in p["cameras"]]
        if not self.cameras or any(not c for c in self.cameras) or len(set(self.cameras)) != len(self.cameras):
            raise NodeSetupError(f"cameras must be distinct non-empty names, got {p['cameras']}")
        if p["encoding"] not in conv.CHANNELS:
            raise NodeSetupError(str(conv.UnsupportedEncoding(p["encoding"])))
        if p["rate"] <= 0:
            raise NodeSetupError(f"rate must be positive, got {p['rate']}")
        try:
            qos = qos_profile(p["output_qos"])
        except ValueError as error:
            raise NodeSetupError(str(error)) from None
        n = len(self.cameras)
        if p["source"] == "synthetic":
            if p["width"] < 1 or p["height"] < 1:
                raise NodeSetupError(f"synthetic views need a positive size, got {p['width']}x{p['height']}")
            self._views = synthetic_views(n, p["height"], p["width"], p["seed"])
            self._files: list[list[Path]] | None = None
        else:
            self._files = folder_groups(Path(p["source"]).expanduser(), n)
            self._views = self._iter_files()
        self.muted = set(p["muted_cameras"])
        self.groups_published = 0
        self.image_publishers = [self.create_publisher(Image, f"{c}/image", qos) for c in self.cameras]
        self.timer = self.create_timer(1.0 / p["rate"], self._tick)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"publishing {n} cameras ({', '.join(pub.topic_name for pub in self.image_publishers)}) from "
            f"{p['source']}; " + format_values(p, ["rate", "encoding", "count", "loop"]))

    def _iter_files(self) -> Iterator[list[np.ndarray]]:
        cache: dict[int, list[np.ndarray]] = {}
        while True:
            for i, files in enumerate(self._files or []):
                if i not in cache:
                    cache[i] = [read_rgb(f) for f in files]
                yield cache[i]
            if not self.params["loop"]:
                return

    def _tick(self) -> None:
        self.publish_group()

    def publish_group(self) -> Any | None:
        """Publish the next group now (what the timer does every 1/rate s); return its stamp
        (``builtin_interfaces/Time``), or ``None`` once ``count`` groups or the source are done.

        A program that paces the cameras itself (the demo) cancels ``timer`` and calls this."""
        count = self.params["count"]
        if count and self.groups_published >= count:
            self.timer.cancel()
            self.get_logger().info(f"published {self.groups_published} groups: done")
            return None
        views = next(self._views, None)
        if views is None:
            self.timer.cancel()
            self.get_logger().info(f"end of {self.params['source']} after {self.groups_published} groups")
            return None
        stamp = self.get_clock().now().to_msg()
        for camera, publisher, pixels in zip(self.cameras, self.image_publishers, views):
            if camera in self.muted:
                continue
            fields = conv.pixels_to_image(pixels, self.params["encoding"])
            msg = Image(height=fields["height"], width=fields["width"], encoding=fields["encoding"],
                        is_bigendian=0, step=fields["step"])
            msg.header.stamp = stamp
            msg.header.frame_id = camera + self.params["frame_id_suffix"]
            msg.data = array.array("B", fields["data"])
            publisher.publish(msg)
        self.groups_published += 1
        return stamp

    def _on_set_parameters(self, params: Sequence[Any]) -> SetParametersResult:
        muted = None
        for param in params:
            if param.name == "rate" and not param.value > 0:
                return SetParametersResult(successful=False, reason="rate must be positive")
            if param.name == "muted_cameras":
                try:
                    muted = string_array(param)
                except ValueError as error:
                    return SetParametersResult(successful=False, reason=str(error))
        for param in params:
            if param.name == "rate":
                self.params["rate"] = float(param.value)
                self.timer.cancel()
                self.destroy_timer(self.timer)
                self.timer = self.create_timer(1.0 / param.value, self._tick)
            elif param.name == "muted_cameras":
                self.muted = {c.strip("/") for c in muted}
                self.get_logger().info(f"muted cameras: {sorted(self.muted) or 'none'}")
        return SetParametersResult(successful=True)


def main(args: Sequence[str] | None = None) -> NoReturn:
    """The node's process: runs until Ctrl-C or SIGTERM, then exits (never returns)."""
    run_node(CameraReplayNode, DEFAULT_NAME, args)


if __name__ == "__main__":
    import sys

    sys.exit(main())

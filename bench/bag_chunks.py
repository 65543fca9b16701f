"""What chunk compression of ``bag compress``'s output saves on a 2-camera + 200 Hz IMU recording.

Writes a synthetic recording with ``rosbags`` (two 480x640 rgb8 cameras at 10 Hz, a
200 Hz ``sensor_msgs/Imu`` with noisy readings, ``/tf`` at 10 Hz), runs
``compress_bag`` (its MCAP output has zstd chunks), and rewrites that output without
chunk compression (what ``bag compress`` wrote before issue 14), then prints the size
on disk of both and each topic's share (serialized bytes and zstd estimate).

    python bench/bag_chunks.py [--seconds 10] [--model CKPT] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from parahydra_ros.bagtools import compress_bag, format_summary  # noqa: E402
from parahydra_ros.bagtools import messages as m  # noqa: E402
from parahydra_ros.bagtools.reading import disk_size  # noqa: E402
from parahydra_ros.codec.api import ParaHydraCodec  # noqa: E402
from parahydra_ros.data.synthetic import SyntheticRig  # noqa: E402

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
CAMERAS = ["/left/image_raw", "/right/image_raw"]


def write_recording(path: Path, seconds: float, height: int, width: int, seed: int = 3) -> None:
    store = m.make_typestore()
    T = store.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Imu, Vector3, Quaternion = T["sensor_msgs/msg/Imu"], T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
    TF, TS, Transform = T["tf2_msgs/msg/TFMessage"], T["geometry_msgs/msg/TransformStamped"], T["geometry_msgs/msg/Transform"]
    rng = np.random.default_rng(seed)
    frames = int(seconds * 10)
    views = SyntheticRig(2, height, width).sequence(seed, num_frames=frames)

    def header(stamp, frame_id):
        return Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id)

    plan = []
    for i in range(int(seconds * 200)):  # IMU: real sensors are noisy; covariances constant
        stamp = T0 + i * 5 * MS
        g = rng.normal(0, 0.02, 3)
        a = rng.normal(0, 0.05, 3) + (0, 0, 9.81)
        q = rng.normal(0, 1e-3, 4) + (0, 0, 0, 1)
        msg = Imu(header=header(stamp, "imu_link"), orientation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]),
                  orientation_covariance=np.full(9, 1e-4), angular_velocity=Vector3(x=g[0], y=g[1], z=g[2]),
                  angular_velocity_covariance=np.full(9, 1e-5),
                  linear_acceleration=Vector3(x=a[0], y=a[1], z=a[2]), linear_acceleration_covariance=np.full(9, 1e-3))
        plan.append((stamp + MS // 2, "/imu", "sensor_msgs/msg/Imu", store.serialize_cdr(msg, "sensor_msgs/msg/Imu")))
    for k in range(frames):
        stamp = T0 + k * 100 * MS
        tf = TF(transforms=[TS(header=header(stamp, "odom"), child_frame_id="base_link",
                               transform=Transform(translation=Vector3(x=0.1 * k, y=0.0, z=0.0),
                                                   rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)))])
        plan.append((stamp + MS, "/tf", "tf2_msgs/msg/TFMessage", store.serialize_cdr(tf, "tf2_msgs/msg/TFMessage")))
        for camera, view in zip(CAMERAS, views.render(k).views):
            msg = T[m.IMAGE](header=header(stamp, camera.split("/")[1]), height=height, width=width, encoding="rgb8",
                             is_bigendian=0, step=3 * width, data=view.reshape(-1))
            plan.append((stamp + 3 * MS, camera, m.IMAGE, store.serialize_cdr(msg, m.IMAGE)))
    plan.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for log_time, topic, msgtype, data in plan:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic], log_time, data)


def rewrite_plain(source: Path, output: Path) -> None:
    """``source`` copied message for message into an MCAP without chunk compression."""
    with Reader(source) as reader, Writer(output, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        routes = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest)
                  for c in reader.connections}
        for connection, log_time, data in reader.messages():
            writer.write(routes[connection.id], log_time, data)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--quality", type=int, default=0)
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: the packaged model)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    codec = ParaHydraCodec.load(args.model)
    work = Path(tempfile.mkdtemp(prefix="parahydra-bench-chunks-"))
    try:
        source, after, before = work / "in", work / "compressed", work / "compressed-plain"
        write_recording(source, args.seconds, args.height, args.width)
        summary = compress_bag(source, after, CAMERAS, codec, args.quality)
        rewrite_plain(after, before)
        result = {
            "recording": f"{args.seconds:g} s, 2 cameras {args.width}x{args.height} rgb8 @ 10 Hz, IMU @ 200 Hz, /tf @ 10 Hz",
            "model": codec.identity.name, "quality": args.quality, "input_bytes": disk_size(source),
            "before_bytes": disk_size(before), "after_bytes": disk_size(after),
            "topics": {t.out_topic: {"messages": t.messages, "serialized_bytes": t.bytes_out, "zstd_bytes": t.bytes_zstd}
                       for t in summary.topics.values()},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(format_summary(summary))
    print(f"\n{result['recording']}; model {result['model']} q{result['quality']}")
    print(f"input {result['input_bytes'] / 1e6:.2f} MB; compressed bag without chunk compression (before) "
          f"{result['before_bytes'] / 1e6:.2f} MB, with zstd chunks (after) {result['after_bytes'] / 1e6:.2f} MB")
    for topic, row in sorted(result["topics"].items()):
        print(f"  {topic:32s} {row['messages']:6d} msgs  before {row['serialized_bytes'] / 1e6:7.3f} MB  "
              f"after ≈ {row['zstd_bytes'] / 1e6:7.3f} MB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

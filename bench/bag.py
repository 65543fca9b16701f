"""Benchmark ``parahydra bag compress``: size and speed on a generated multi-camera bag.

    python bench/bag.py [--model CKPT] [--groups 100] [--json out.json]
    python bench/bag.py --quick --model CKPT    # 10 groups of 240x320, lowest and highest quality

Writes a rosbag2 (MCAP) of ``--groups`` instants of three synthetic rgb8 cameras
(640x480 by default, one scene seen with parallax by a moving rig, 10 Hz, a few ms
of stamp jitter) plus ``/imu`` at 100 Hz, then measures, as output / input bytes on
disk:

* rosbag2-style zstd, written by ``rosbags`` (the only zstd this environment has):
  MCAP chunk compression (what ``ros2 bag record -s mcap`` with a zstd storage
  preset does; ``rosbags`` uses zstd's default level 3), and rosbag2's
  ``--compression-mode file`` and ``message`` with ``zstd``. Lossless.
* ``parahydra bag compress`` at each quality (``compress_bag``), then
  ``decompress_bag`` (joint decoding); PSNR of the restored images against the input.
* JPEG at equal PSNR: the JPEG anchor's RD curve (``eval.anchors.ANCHORS["jpeg"]``,
  4:2:0, OpenCV-identical) over a subset of the frames, interpolated
  (``eval.rd.bpp_at_psnr``) at ParaHydra's mean PSNR; its bag size is estimated as
  the input minus the raw image messages plus ``CompressedImage`` messages of that
  size. ``n/a`` when the PSNR is outside JPEG's curve.

Throughput is camera frames per second of each whole command (reading, coding and
writing the bag). The default model is the packaged one
(``parahydra_ros/weights/parahydra_small.pt``); pass ``--model`` when it is missing.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from parahydra_ros.bagtools import bag_info, compress_bag, decompress_bag  # noqa: E402
from parahydra_ros.bagtools import messages as m  # noqa: E402
from parahydra_ros.bagtools.reading import disk_size  # noqa: E402
from parahydra_ros.bagtools.topics import latent_topic  # noqa: E402
from parahydra_ros.codec import image_conversions as conv  # noqa: E402
from parahydra_ros.codec.api import ParaHydraCodec  # noqa: E402
from parahydra_ros.codec.checkpoint import DEFAULT_MODEL  # noqa: E402
from parahydra_ros.codec.metrics import psnr  # noqa: E402
from parahydra_ros.data.synthetic import SyntheticRig  # noqa: E402
from parahydra_ros.eval.anchors import ANCHORS  # noqa: E402
from parahydra_ros.eval.rd import anchor_rd_points, bpp_at_psnr  # noqa: E402

CAMERAS = ["/cam0/image_raw", "/cam1/image_raw", "/cam2/image_raw"]
MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
PERIOD = 100 * MS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: the packaged model)")
    p.add_argument("--groups", type=int, default=None, help="instants, 3 frames each (default 100)")
    p.add_argument("--height", type=int, default=None, help="default 480")
    p.add_argument("--width", type=int, default=None, help="default 640")
    p.add_argument("--qualities", default=None, help="comma-separated quality indices (default: all)")
    p.add_argument("--jpeg-images", type=int, default=None,
                   help="frames (spread over the bag) the JPEG RD curve is measured on, default 12 "
                        "(the anchor computes MS-SSIM too, which dominates its time)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: defaults of 10 groups of 240x320, lowest and highest quality, "
                        "3 JPEG frames")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--workdir", type=Path, default=None, help="keep the bags here (default: a temporary dir)")
    args = p.parse_args(argv)
    defaults = dict(groups=10, height=240, width=320, jpeg_images=3) if args.quick else \
        dict(groups=100, height=480, width=640, jpeg_images=12)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def write_source_bag(path: Path, groups: int, height: int, width: int, seed: int,
                     jpeg_images: int) -> list[np.ndarray]:
    """The input bag; returns ``jpeg_images`` of its frames, spread over it, for the JPEG curve."""
    store = m.make_typestore()
    Image, Header, Time = (store.types[t] for t in (m.IMAGE, "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    Imu, Vector3, Quaternion = (store.types[t] for t in ("sensor_msgs/msg/Imu", "geometry_msgs/msg/Vector3",
                                                         "geometry_msgs/msg/Quaternion"))
    sequence = SyntheticRig(len(CAMERAS), height, width).sequence(seed, num_frames=groups)
    rng = np.random.default_rng(seed)
    every = max(1, groups * len(CAMERAS) // max(1, jpeg_images))
    sample, count = [], 0

    def header(stamp, frame_id):
        return Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id)

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cams = [writer.add_connection(c, m.IMAGE, typestore=store) for c in CAMERAS]
        imu = writer.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=store)
        for k in range(groups):
            for i in range(10):
                stamp = T0 + k * PERIOD + i * 10 * MS
                msg = Imu(header=header(stamp, "imu"), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
                          orientation_covariance=np.zeros(9), angular_velocity=Vector3(x=0.0, y=0.0, z=0.01 * i),
                          angular_velocity_covariance=np.zeros(9),
                          linear_acceleration=Vector3(x=0.0, y=0.0, z=9.81), linear_acceleration_covariance=np.zeros(9))
                writer.write(imu, stamp + MS, store.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
            for camera, view in enumerate(sequence.render(k).views):
                stamp = T0 + k * PERIOD + int(rng.integers(-3, 4)) * MS
                msg = Image(header=header(stamp, f"cam{camera}"), height=height, width=width, encoding="rgb8",
                            is_bigendian=0, step=3 * width, data=view.reshape(-1))
                writer.write(cams[camera], stamp + 5 * MS, store.serialize_cdr(msg, m.IMAGE))
                if count % every == 0 and len(sample) < jpeg_images:
                    sample.append(view)
                count += 1
    return sample


def rewrite_zstd(source: Path, output: Path, mode: CompressionMode) -> float:
    """Copy ``source`` with rosbag2-style zstd compression; returns the seconds it took."""
    start = time.perf_counter()
    with Reader(source) as reader:
        writer = Writer(output, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.set_compression(mode, CompressionFormat.ZSTD)
        with writer:
            conns = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest,
                                                 offered_qos_profiles=c.ext.offered_qos_profiles)
                     for c in reader.connections}
            for connection, log_time, data in reader.messages():
                writer.write(conns[connection.id], log_time, data)
    return time.perf_counter() - start


def restored_psnr(source: Path, restored: Path) -> float:
    """Mean PSNR of every restored image against the input image of the same topic and index."""
    def images(path):
        store = m.make_typestore()
        with Reader(path) as reader:
            cams = [c for c in reader.connections if c.topic in CAMERAS]
            per_topic: dict[str, list] = {c: [] for c in CAMERAS}
            for connection, _, data in reader.messages(connections=cams):
                msg = store.deserialize_cdr(data, m.IMAGE)
                per_topic[connection.topic].append((m.stamp_ns(msg.header), conv.msg_to_pixels(msg)))
        return per_topic

    originals, decoded = images(source), images(restored)
    values = []
    for topic in CAMERAS:
        a, b = sorted(originals[topic], key=lambda x: x[0]), sorted(decoded[topic], key=lambda x: x[0])
        assert [s for s, _ in a] == [s for s, _ in b], f"{topic}: stamps differ after the round trip"
        values += [psnr(x, y) for (_, x), (_, y) in zip(a, b)]
    return float(np.mean(values))


def raw_image_bytes(source: Path) -> tuple[int, int]:
    """(serialized bytes of the camera messages, their count)."""
    with Reader(source) as reader:
        cams = [c for c in reader.connections if c.topic in CAMERAS]
        sizes = [len(data) for _, _, data in reader.messages(connections=cams)]
    return sum(sizes), len(sizes)


def compressed_image_overhead(height: int, width: int) -> int:
    """Bytes of a ``CompressedImage`` message besides its JPEG data (header, format, lengths)."""
    store = m.make_typestore()
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    msg = store.types[m.COMPRESSED_IMAGE](header=Header(stamp=Time(sec=0, nanosec=0), frame_id="cam0"),
                                          format="rgb8; jpeg compressed bgr8", data=np.zeros(0, np.uint8))
    return len(store.serialize_cdr(msg, m.COMPRESSED_IMAGE))


def run(args: argparse.Namespace) -> dict:
    model = args.model or DEFAULT_MODEL
    if not Path(model).is_file():
        raise SystemExit(f"bench/bag.py: no model at {model} (the packaged model is not built yet): "
                         "pass --model CHECKPOINT")
    codec = ParaHydraCodec.load(model, device=args.device)
    qualities = (list(range(codec.num_qualities)) if args.qualities is None
                 else [int(q) for q in args.qualities.split(",")])
    if args.quick and args.qualities is None:
        qualities = sorted({0, codec.num_qualities - 1})
    work = args.workdir or Path(tempfile.mkdtemp(prefix="parahydra-bench-bag-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = work / "input"
        sample = write_source_bag(source, args.groups, args.height, args.width, args.seed, args.jpeg_images)
        size_in = disk_size(source)
        raw_bytes, frames = raw_image_bytes(source)
        pixels = frames * args.height * args.width
        rows = [dict(method="raw", quality=None, bytes=size_in, ratio=1.0, bpp=24.0, psnr=None,
                     encode_fps=None, decode_fps=None)]
        for label, mode in (("zstd mcap-chunks", CompressionMode.STORAGE), ("zstd file", CompressionMode.FILE),
                            ("zstd message", CompressionMode.MESSAGE)):
            out = work / label.replace(" ", "-")
            seconds = rewrite_zstd(source, out, mode)
            size = disk_size(out)
            rows.append(dict(method=f"rosbag2 {label}", quality=None, bytes=size, ratio=size / size_in,
                             bpp=None, psnr=None, encode_fps=frames / seconds, decode_fps=None))
        jpeg_points = anchor_rd_points(sample, ANCHORS["jpeg"])
        overhead = compressed_image_overhead(args.height, args.width)
        for quality in qualities:
            compressed, restored = work / f"parahydra-q{quality}", work / f"restored-q{quality}"
            enc = compress_bag(source, compressed, CAMERAS, codec, quality)
            dec = decompress_bag(compressed, restored, codec)
            info = {t.topic: t for t in bag_info(compressed).topics}
            payload = sum(info[latent_topic(c)].latent.payload_bytes for c in CAMERAS)
            mean_psnr = restored_psnr(source, restored)
            rows.append(dict(method="ParaHydra", quality=quality, bytes=enc.disk_out, ratio=enc.disk_out / size_in,
                             bpp=8 * payload / pixels, psnr=mean_psnr, encode_fps=enc.frames_per_second,
                             decode_fps=dec.frames_per_second))
            try:
                jpeg_bpp = bpp_at_psnr(jpeg_points, mean_psnr)
            except ValueError:
                jpeg_bpp = None
            jpeg_size = (size_in - raw_bytes + frames * overhead + jpeg_bpp * pixels / 8) if jpeg_bpp else None
            rows.append(dict(method="JPEG @ equal PSNR", quality=quality, bytes=jpeg_size,
                             ratio=jpeg_size / size_in if jpeg_size else None, bpp=jpeg_bpp,
                             psnr=mean_psnr if jpeg_bpp else None, encode_fps=None, decode_fps=None))
            shutil.rmtree(restored)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "bench": "bag", "model": f"{codec.identity.name} ({codec.identity.hash})", "device": str(codec.device),
        "groups": args.groups, "cameras": len(CAMERAS), "height": args.height, "width": args.width,
        "frames": frames, "input_bytes": size_in, "jpeg_curve_images": len(sample),
        "jpeg_curve": [dict(quality=p.quality, bpp=p.bpp, psnr=p.psnr) for p in jpeg_points],
        "rows": rows,
    }


def format_table(result: dict) -> str:
    head = (f"{result['groups']} groups x {result['cameras']} cameras {result['width']}x{result['height']} rgb8, "
            f"{result['frames']} frames, input {result['input_bytes'] / 1e6:.1f} MB; model {result['model']} "
            f"on {result['device']}")
    rows = [("method", "q", "size MB", "ratio", "bpp", "PSNR dB", "enc fr/s", "dec fr/s")]

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    for r in result["rows"]:
        rows.append((r["method"], "" if r["quality"] is None else str(r["quality"]),
                     fmt(None if r["bytes"] is None else r["bytes"] / 1e6, ".2f"), fmt(r["ratio"], ".4f"),
                     fmt(r["bpp"], ".3f"), "lossless" if r["quality"] is None else fmt(r["psnr"], ".2f"),
                     fmt(r["encode_fps"], ".1f"),
                     fmt(r["decode_fps"], ".1f")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [head] + ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                      for row in rows]
    curve = [p["psnr"] for p in result["jpeg_curve"]]
    if any(r["method"].startswith("JPEG") and r["bpp"] is None for r in result["rows"]):
        lines.append(f"JPEG n/a: ParaHydra's PSNR lies outside the JPEG curve's {min(curve):.2f}-{max(curve):.2f} dB "
                     f"(measured on {result['jpeg_curve_images']} frames)")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``parahydra bag``: compress / decompress / info on real bags written here with ``rosbags`` (no ROS).

The bag: three colour cameras (rgb8, bgr8, and a JPEG ``CompressedImage``), a mono
camera, ``/imu`` at 100 Hz with a QoS profile, ``/tf`` and a topic of a custom type
the standard typestore does not know. Camera frames are jittered within the slop;
``/cam1`` drops one instant and ``/cam0`` has one extra frame that no other camera
matches, so the bag holds complete groups, a three-view group and a lone frame.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from codec_fixtures import tiny_checkpoint
from parahydra_ros.bagtools import (
    BagReadError,
    FrameError,
    OutputError,
    TopicError,
    bag_info,
    compress_bag,
    decompress_bag,
    format_info,
    format_summary,
)
from parahydra_ros.bagtools import messages as m
from parahydra_ros.bagtools.topics import latent_topic, restored_topic
from parahydra_ros.cli import main
from parahydra_ros.codec.api import ParaHydraCodec
from parahydra_ros.codec.checkpoint import ModelIdentity, load_checkpoint
from parahydra_ros.data.bag_groups import BagGroupDataset, parse_bag_source
from parahydra_ros.data.training import TrainingBatches
from parahydra_ros.data.synthetic import SyntheticRig
from parahydra_ros.codec.metrics import psnr
from parahydra_ros.codec import image_conversions as conv

H, W = 96, 128
MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
PERIOD = 100 * MS
INSTANTS = 8
CAMERAS = ["/cam0/image_raw", "/cam1/image_raw", "/cam2/image_raw/compressed", "/mono/image_raw"]
RESTORED = ["/cam0/image_raw", "/cam1/image_raw", "/cam2/image_raw", "/mono/image_raw"]
DROPPED = (1, 5)  # /cam1 misses instant 5
EXTRA = (0, T0 + 7 * PERIOD + 50 * MS)  # /cam0 frame 50 ms after the last instant: nobody within the slop
OTHER = ["/imu", "/tf", "/status"]
QUALITY = 2
#: The tiny model, trained for a few steps only (the bag plumbing does not need a good
#: model), reconstructs at ~10 dB; the bag path must reproduce exactly what the codec
#: decodes (checked exactly below), so this floor only catches gross garbage (blank images).
PSNR_FLOOR = 7.0
STATUS_MSG = "string text\nuint32 level\n"
IMU_QOS = Qos(QosHistory.KEEP_LAST, 7, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, QosTime(0, 0),
              QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


# -- building bags ---------------------------------------------------------------------------
def source_typestore():
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(STATUS_MSG, "test_msgs/msg/Status"))
    return store


@dataclass
class Frame:
    camera: int
    stamp: int
    log_time: int
    pixels: np.ndarray  # what the codec is given (RGB or mono; the JPEG camera: its decoded pixels)


def header(ts, stamp: int, frame_id: str):
    Time, Header = ts.types["builtin_interfaces/msg/Time"], ts.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id)


def image_msg(ts, stamp, frame_id, pixels, encoding):
    fields = conv.pixels_to_image(pixels, encoding)
    return ts.types[m.IMAGE](header=header(ts, stamp, frame_id), height=fields["height"], width=fields["width"],
                             encoding=encoding, is_bigendian=0, step=fields["step"],
                             data=np.frombuffer(fields["data"], np.uint8))


def camera_message(ts, camera: int, stamp: int, rgb: np.ndarray) -> tuple[str, object, np.ndarray]:
    """(type, message, pixels the codec will see) of camera ``camera``."""
    frame_id = CAMERAS[camera].split("/")[1]
    if camera == 2:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        msg = ts.types[m.COMPRESSED_IMAGE](header=header(ts, stamp, frame_id), format="rgb8; jpeg compressed bgr8",
                                           data=jpeg.ravel())
        return m.COMPRESSED_IMAGE, msg, conv.compressed_to_pixels(msg.format, msg.data)[0]
    if camera == 3:
        mono = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return m.IMAGE, image_msg(ts, stamp, frame_id, mono, "mono8"), mono
    return m.IMAGE, image_msg(ts, stamp, frame_id, rgb, "bgr8" if camera == 1 else "rgb8"), rgb


def build_bag(path: Path, storage: str = "mcap", instants: int = INSTANTS, compression=None,
              bad: dict | None = None) -> list[Frame]:
    """Write the test bag; ``bad`` = {(camera, instant): callable(ts, msgtype, msg) -> bytes} replaces messages."""
    ts = source_typestore()
    sequence = SyntheticRig(4, H, W, blur_probability=0.0).sequence(seed=3, num_frames=instants + 1)
    rng = np.random.default_rng(0)
    plan = []  # (log time, kind, payload)
    frames: list[Frame] = []
    for k in range(instants + 1):
        views = sequence.render(k).views
        for camera in range(len(CAMERAS)):
            if (camera, k) == DROPPED:
                continue
            if k == instants:  # the extra frame
                if camera != EXTRA[0]:
                    continue
                stamp = EXTRA[1]
            else:
                stamp = T0 + k * PERIOD + int(rng.integers(-4, 5)) * MS
            log_time = stamp + (2 + camera) * MS
            msgtype, msg, pixels = camera_message(ts, camera, stamp, views[camera])
            data = bytes(ts.serialize_cdr(msg, msgtype))
            if bad and (camera, k) in bad:
                data = bad[(camera, k)](ts, msgtype, msg)
            plan.append((log_time, CAMERAS[camera], msgtype, data))
            frames.append(Frame(camera, stamp, log_time, pixels))
    Imu, Vector3 = ts.types["sensor_msgs/msg/Imu"], ts.types["geometry_msgs/msg/Vector3"]
    Quaternion = ts.types["geometry_msgs/msg/Quaternion"]
    for i in range(instants * 10):
        stamp = T0 + i * 10 * MS
        imu = Imu(header=header(ts, stamp, "imu"), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
                  orientation_covariance=np.zeros(9), angular_velocity=Vector3(x=0.1 * i, y=0.0, z=0.0),
                  angular_velocity_covariance=np.zeros(9), linear_acceleration=Vector3(x=0.0, y=0.0, z=9.81),
                  linear_acceleration_covariance=np.zeros(9))
        plan.append((stamp + MS, "/imu", "sensor_msgs/msg/Imu", bytes(ts.serialize_cdr(imu, "sensor_msgs/msg/Imu"))))
    TF, TS = ts.types["tf2_msgs/msg/TFMessage"], ts.types["geometry_msgs/msg/TransformStamped"]
    Transform = ts.types["geometry_msgs/msg/Transform"]
    for i in range(instants):
        stamp = T0 + i * PERIOD
        tf = TF(transforms=[TS(header=header(ts, stamp, "map"), child_frame_id="base",
                               transform=Transform(translation=Vector3(x=float(i), y=0.0, z=0.0),
                                                   rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)))])
        data = bytes(ts.serialize_cdr(tf, "tf2_msgs/msg/TFMessage"))
        plan.append((stamp + 3 * MS, "/tf", "tf2_msgs/msg/TFMessage", data))
    Status = ts.types["test_msgs/msg/Status"]
    for i in range(3):
        plan.append((T0 + i * 250 * MS, "/status", "test_msgs/msg/Status",
                     bytes(ts.serialize_cdr(Status(text=f"ok {i}", level=i), "test_msgs/msg/Status"))))
    plan.sort(key=lambda entry: entry[0])
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    if compression:
        writer.set_compression(compression, CompressionFormat.ZSTD)
    with writer:
        connections = {}
        for _, topic, msgtype, _ in plan:
            if topic not in connections:
                qos = [IMU_QOS] if topic == "/imu" else []
                connections[topic] = writer.add_connection(topic, msgtype, typestore=ts, offered_qos_profiles=qos)
        for log_time, topic, _, data in plan:
            writer.write(connections[topic], log_time, data)
    return frames


def read_bag(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    with Reader(path) as reader:
        out: dict[str, list[tuple[int, bytes]]] = {}
        for connection, log_time, data in reader.messages():
            out.setdefault(connection.topic, []).append((log_time, bytes(data)))
    return {topic: sorted(messages, key=lambda x: x[0]) for topic, messages in out.items()}


def connections_of(path: Path) -> dict[str, object]:
    with Reader(path) as reader:
        return {c.topic: c for c in reader.connections}


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) with its bytes, to prove nothing changed."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """30 steps (not the fixture's 150): the tests check the bag plumbing, not the model's quality."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", steps=30)


@pytest.fixture(scope="module")
def codec(checkpoint) -> ParaHydraCodec:
    return ParaHydraCodec.load(checkpoint)


@dataclass
class RoundTrip:
    source: Path
    compressed: Path
    restored: Path
    frames: list[Frame]
    compress_summary: object
    decompress_summary: object


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def round_trip(request, tmp_path_factory, codec, checkpoint) -> RoundTrip:
    storage = request.param
    root = tmp_path_factory.mktemp(storage)
    source = root / "in"
    frames = build_bag(source, storage)
    before = tree(source)
    compressed, restored = root / "compressed", root / "restored"
    if storage == "mcap":  # through the command line, with --verify
        assert main(["bag", "compress", str(source), str(compressed), "--cameras", ",".join(CAMERAS[:2]),
                     "--cameras", ",".join(CAMERAS[2:]), "--quality", str(QUALITY), "--model", str(checkpoint),
                     "--verify", "--no-progress"]) == 0
        compress_summary = None
    else:
        compress_summary = compress_bag(source, compressed, CAMERAS, codec, QUALITY, verify=True)
    decompress_summary = decompress_bag(compressed, restored, codec)
    assert tree(source) == before, "the input bag was modified"
    return RoundTrip(source, compressed, restored, frames, compress_summary, decompress_summary)


# -- round trip ------------------------------------------------------------------------------
def test_compressed_bag_has_latent_topics_with_a_proper_schema(round_trip):
    connections = connections_of(round_trip.compressed)
    assert set(connections) == {latent_topic(c) for c in CAMERAS} | set(OTHER)
    typestore = m.make_typestore()
    for camera in CAMERAS:
        c = connections[latent_topic(camera)]
        assert c.msgtype == m.LATENT
        assert c.digest == typestore.hash_rihs01(m.LATENT)
        assert "uint8[] payload" in c.msgdef.data and "MSG: std_msgs/Header" in c.msgdef.data
    installed = Path(m.latent_definition_path()).with_suffix(".json")
    if installed.exists():  # rosidl's own hash of the type, from a CMake build
        hashes = {t["type_name"]: t["hash_string"] for t in json.loads(installed.read_text())["type_hashes"]}
        assert hashes[m.LATENT] == typestore.hash_rihs01(m.LATENT)
    latents = read_bag(round_trip.compressed)
    for index, camera in enumerate(CAMERAS):
        sources = [f for f in round_trip.frames if f.camera == index]
        messages = latents[latent_topic(camera)]
        assert [t for t, _ in messages] == [f.log_time for f in sources]
        for frame_index, ((_, data), frame) in enumerate(zip(messages, sources)):
            latent = typestore.deserialize_cdr(data, m.LATENT)
            assert m.stamp_ns(latent.header) == frame.stamp
            assert (latent.camera, latent.frame_index, latent.quality) == (camera, frame_index, QUALITY)
            assert (latent.height, latent.width) == (H, W)
            assert latent.payload_size == len(latent.payload) < H * W
            assert latent.encoding == {0: "rgb8", 1: "bgr8", 2: "rgb8", 3: "mono8"}[index]


def test_non_image_topics_are_copied_byte_for_byte(round_trip):
    source, restored = read_bag(round_trip.source), read_bag(round_trip.restored)
    compressed = read_bag(round_trip.compressed)
    before, after = connections_of(round_trip.source), connections_of(round_trip.restored)
    for topic in OTHER:
        assert restored[topic] == source[topic] == compressed[topic]
        for field in ("msgtype", "msgdef", "digest", "ext"):
            assert getattr(after[topic], field) == getattr(before[topic], field), (topic, field)
    assert after["/imu"].ext.offered_qos_profiles == [IMU_QOS]


def test_images_come_back_under_the_original_names_with_headers_sizes_and_encodings(round_trip, codec):
    restored = read_bag(round_trip.restored)
    assert set(restored) == set(RESTORED) | set(OTHER)
    typestore = m.make_typestore()
    connections = connections_of(round_trip.restored)
    for index, topic in enumerate(RESTORED):
        assert connections[topic].msgtype == m.IMAGE
        sources = [f for f in round_trip.frames if f.camera == index]
        messages = restored[topic]
        assert len(messages) == len(sources)
        values = []
        for (log_time, data), frame in zip(messages, sources):
            image = typestore.deserialize_cdr(data, m.IMAGE)
            assert log_time == frame.log_time
            assert m.stamp_ns(image.header) == frame.stamp
            assert image.header.frame_id == CAMERAS[index].split("/")[1]
            assert (image.height, image.width) == (H, W)
            assert image.encoding == {0: "rgb8", 1: "bgr8", 2: "rgb8", 3: "mono8"}[index]
            values.append(psnr(frame.pixels, conv.msg_to_pixels(image)))
        assert min(values) > PSNR_FLOOR, (topic, values)


def test_groups_are_decoded_jointly_and_unpaired_frames_alone(round_trip, codec):
    """The restored pixels are exactly the codec's joint decode of the group (or lone decode)."""
    latents, restored = read_bag(round_trip.compressed), read_bag(round_trip.restored)
    typestore = m.make_typestore()

    def payload(camera, i):
        return bytes(typestore.deserialize_cdr(latents[latent_topic(CAMERAS[camera])][i][1], m.LATENT).payload)

    def restored_pixels(camera, i):
        return conv.msg_to_pixels(typestore.deserialize_cdr(restored[RESTORED[camera]][i][1], m.IMAGE))

    group = codec.decode_group([payload(c, 0) for c in range(4)], joint=True)  # instant 0: all four
    for camera in range(4):
        assert np.array_equal(restored_pixels(camera, 0), group.images[camera])
    alone = codec.decode_group([payload(0, INSTANTS)], joint=True)  # /cam0's extra frame
    assert np.array_equal(restored_pixels(0, INSTANTS), alone.images[0])
    summary = round_trip.decompress_summary
    assert (summary.frames, summary.groups, summary.partial_groups) == (len(round_trip.frames), INSTANTS + 1, 2)


def test_summaries_report_sizes_ratios_and_psnr(round_trip):
    summary = round_trip.decompress_summary
    text = format_summary(summary)
    assert "/cam2/image_raw/compressed/parahydra" in text and "/cam2/image_raw" in text
    assert summary.topics["/imu"].ratio == 1.0
    if round_trip.compress_summary is not None:
        compress = round_trip.compress_summary
        assert compress.mean_psnr is not None and compress.mean_psnr > PSNR_FLOOR
        assert all(compress.topics[c].ratio < 0.5 for c in CAMERAS[:2])
        assert "mean PSNR" in format_summary(compress)


def test_info_lists_counts_sizes_model_quality_and_bpp(round_trip, codec, capsys):
    info = bag_info(round_trip.compressed)
    topics = {t.topic: t for t in info.topics}
    latent = topics[latent_topic(CAMERAS[0])]
    assert latent.messages == INSTANTS + 1 and latent.bytes > 0
    assert list(latent.latent.models) == [f"{codec.identity.name} ({codec.identity.hash})"]
    assert list(latent.latent.qualities) == [QUALITY]
    assert 0 < latent.latent.bits_per_pixel < 8
    assert latent.latent.restores == "/cam0/image_raw"
    assert topics[latent_topic(CAMERAS[2])].latent.restores == "/cam2/image_raw"
    assert topics["/imu"].messages == INSTANTS * 10 and topics["/imu"].latent is None
    assert main(["bag", "info", str(round_trip.compressed)]) == 0
    out = capsys.readouterr().out
    assert f"quality {QUALITY}" in out and "bpp" in out and codec.identity.hash in out and "/imu" in out
    assert format_info(info) in out


# -- training on a recording -------------------------------------------------------------------
def _expected_groups(frames: list[Frame]) -> list[np.ndarray]:
    """The complete instants of ``build_bag``'s cameras in order, as the views training sees (RGB)."""
    by_instant: dict[int, dict[int, np.ndarray]] = {}
    for f in frames:
        if f.stamp != EXTRA[1]:
            rgb = np.repeat(f.pixels[..., None], 3, axis=2) if f.pixels.ndim == 2 else f.pixels
            by_instant.setdefault(round((f.stamp - T0) / PERIOD), {})[f.camera] = rgb
    return [np.stack([views[c] for c in range(len(CAMERAS))])
            for _, views in sorted(by_instant.items()) if len(views) == len(CAMERAS)]


def _is_aligned_crop(sample: np.ndarray, group: np.ndarray) -> bool:
    """Whether ``sample`` (V×c×c×3) is one window of ``group`` (V×H×W×3), the same for every view,
    under one of the four flips."""
    crop = sample.shape[1]
    for flipped in (group, group[:, :, ::-1], group[:, ::-1], group[:, ::-1, ::-1]):
        corners = np.lib.stride_tricks.sliding_window_view(flipped[0], (4, 4), axis=(0, 1))
        candidates = np.argwhere(np.all(corners == sample[0, :4, :4].transpose(2, 0, 1), axis=(2, 3, 4)))
        if any(np.array_equal(flipped[:, y:y + crop, x:x + crop], sample) for y, x in candidates):
            return True
    return False


def test_bag_groups_become_training_samples(tmp_path):
    frames = build_bag(tmp_path / "in")
    before = tree(tmp_path / "in")
    dataset = BagGroupDataset(tmp_path / "in", CAMERAS)
    expected = _expected_groups(frames)
    assert len(dataset) == len(expected) == INSTANTS - 1  # /cam1 misses one instant
    assert dataset.skipped == 2  # that instant's three views and /cam0's lone frame
    for index, views in enumerate(expected):  # PNG in memory is lossless; mono is expanded
        assert np.array_equal(dataset.views(index), views)
    assert np.array_equal(dataset.views(2, [3, 0]), expected[2][[3, 0]])

    source = f"bag:{tmp_path / 'in'}:{','.join(CAMERAS)}"
    data = TrainingBatches(source, batch_size=3, crop=64, views=(2, 3), num_qualities=4, validation_groups=1)
    x, _ = data.batch(step=0)
    assert x.shape[0] == 3 and 2 <= x.shape[1] <= 3 and x.shape[2:] == (3, 64, 64)
    for sample in (x * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy():
        assert any(_is_aligned_crop(sample, group[list(chosen)]) for group in expected
                   for chosen in itertools.combinations(range(len(CAMERAS)), len(sample)))
    assert main(["train", "--out", str(tmp_path / "run"), "--config", "tiny", "--data", source, "--views", "2",
                 "--steps", "1", "--batch-size", "1", "--crop", "64", "--val-every", "1", "--threads", "1"]) == 0
    meta = load_checkpoint(tmp_path / "run" / "latest.pt")["metadata"]
    assert meta["step"] == 1 and meta["data"]["source"] == source
    assert tree(tmp_path / "in") == before


def test_bag_training_source_errors_are_named(tmp_path):
    build_bag(tmp_path / "in", instants=2)
    with pytest.raises(TopicError, match="/cam9/image_raw does not exist.*its image topics: /cam0"):
        BagGroupDataset(tmp_path / "in", ["/cam0/image_raw", "/cam9/image_raw"])
    with pytest.raises(TopicError, match="/imu is a sensor_msgs/msg/Imu"):
        BagGroupDataset(tmp_path / "in", ["/imu"])
    with pytest.raises(ValueError, match="expected bag:PATH:/camera1/topic"):
        parse_bag_source(str(tmp_path / "in"))
    with pytest.raises(BagReadError):
        BagGroupDataset(tmp_path / "missing.mcap", ["/cam0/image_raw"])


# -- names, inputs and safety ----------------------------------------------------------------
def test_topic_names_map_back():
    assert restored_topic(latent_topic("/cam0/image_raw")) == "/cam0/image_raw"
    assert restored_topic(latent_topic("/cam/image/compressed")) == "/cam/image"
    assert restored_topic(latent_topic("/cam/image/compressed"), taken={"/cam/image"}) == "/cam/image/compressed"
    assert restored_topic("/cam3/latent") == "/cam3/image_reconstructed"


def test_ros1_bag_is_converted(tmp_path, codec):
    ts = get_typestore(Stores.ROS1_NOETIC)
    source = tmp_path / "in.bag"
    rgb = SyntheticRig(1, H, W).sequence(seed=1).render(0).views[0]
    Header, Time, UInt32 = (ts.types[t] for t in ("std_msgs/msg/Header", "builtin_interfaces/msg/Time",
                                                  "std_msgs/msg/UInt32"))
    with Writer1(source) as writer:
        cam = writer.add_connection("/cam/image_raw", m.IMAGE, typestore=ts)
        count = writer.add_connection("/count", "std_msgs/msg/UInt32", typestore=ts)
        for i in range(2):
            msg = ts.types[m.IMAGE](header=Header(seq=i, stamp=Time(sec=5, nanosec=i), frame_id="cam"), height=H,
                                    width=W, encoding="rgb8", is_bigendian=0, step=3 * W, data=rgb.ravel())
            writer.write(cam, T0 + i, ts.serialize_ros1(msg, m.IMAGE))
            writer.write(count, T0 + i, ts.serialize_ros1(UInt32(data=i), "std_msgs/msg/UInt32"))
    summary = compress_bag(source, tmp_path / "out", ["/cam/image_raw"], codec, 0)
    assert summary.frames == 2 and (tmp_path / "out" / "out.mcap").exists()
    messages = read_bag(tmp_path / "out")
    assert {topic: len(v) for topic, v in messages.items()} == {"/cam/image_raw/parahydra": 2, "/count": 2}
    latent = m.make_typestore().deserialize_cdr(messages["/cam/image_raw/parahydra"][1][1], m.LATENT)
    assert (latent.header.stamp.sec, latent.header.stamp.nanosec, latent.header.frame_id) == (5, 1, "cam")


def test_missing_topic_and_wrong_type_are_named(tmp_path, codec, checkpoint, capsys):
    source = tmp_path / "in"
    build_bag(source, instants=1)
    with pytest.raises(TopicError, match=r"/cam9/image_raw does not exist.*/cam0/image_raw"):
        compress_bag(source, tmp_path / "out", ["/cam0/image_raw", "/cam9/image_raw"], codec, 0)
    with pytest.raises(TopicError, match=r"/imu is a sensor_msgs/msg/Imu"):
        compress_bag(source, tmp_path / "out", ["/imu"], codec, 0)
    with pytest.raises(TopicError, match="no parahydra_ros/msg/CompressedLatent topic"):
        decompress_bag(source, tmp_path / "out", codec)
    assert main(["bag", "compress", str(source), str(tmp_path / "out"), "--cameras", "/nope",
                 "--model", str(checkpoint)]) == 2
    assert "/nope does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def _truncated_cdr(ts, msgtype, msg):
    return bytes(ts.serialize_cdr(msg, msgtype))[:40]


def _short_data(ts, msgtype, msg):
    msg.data = msg.data[: len(msg.data) // 2]
    return bytes(ts.serialize_cdr(msg, msgtype))


def _depth_image(ts, msgtype, msg):
    msg.encoding = "16UC1"
    return bytes(ts.serialize_cdr(msg, msgtype))


@pytest.mark.parametrize("bad, pattern", [
    (_depth_image, r"/cam1/image_raw message 1 \(bag message \d+\): cannot convert the image: image encoding '16UC1'"),
    (_short_data, r"/cam1/image_raw message 1 \(bag message \d+\): cannot convert the image: bgr8 image 128x96"),
    (_truncated_cdr, r"/cam1/image_raw message 1 \(bag message \d+\): cannot deserialize the sensor_msgs/msg/Image"),
], ids=["unknown-encoding", "short-data", "truncated-cdr"])
def test_malformed_frames_are_named_and_leave_out_untouched(tmp_path, codec, bad, pattern):
    source, out = tmp_path / "in", tmp_path / "out"
    build_bag(source, instants=3, bad={(1, 1): bad})
    out.mkdir()
    (out / "keep.txt").write_text("previous output")
    with pytest.raises(FrameError, match=pattern) as caught:
        compress_bag(source, out, CAMERAS, codec, 0, force=True)
    assert (caught.value.topic, caught.value.topic_index) == ("/cam1/image_raw", 1)
    assert tree(out) == {"keep.txt": b"previous output"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_named(tmp_path, codec, storage):
    source = tmp_path / "in"
    build_bag(source, storage, instants=2)
    (file,) = [f for f in source.iterdir() if f.suffix in (".mcap", ".db3")]
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    pattern = rf"{file.parent}: cannot open the bag \(.*\): the bag is truncated or corrupt"
    with pytest.raises(BagReadError, match=pattern):
        compress_bag(source, tmp_path / "out", CAMERAS, codec, 0)
    assert not (tmp_path / "out").exists()


def test_bag_cut_short_names_topic_and_message(tmp_path, codec):
    """A readable SQLite3 bag holding fewer messages than its metadata declares."""
    source = tmp_path / "in"
    build_bag(source, "sqlite3", instants=3)
    (file,) = source.glob("*.db3")
    with sqlite3.connect(file) as db:
        topic_id = db.execute("SELECT id FROM topics WHERE name = '/mono/image_raw'").fetchone()[0]
        last = db.execute("SELECT max(timestamp) FROM messages WHERE topic_id = ?", (topic_id,)).fetchone()[0]
        db.execute("DELETE FROM messages WHERE topic_id = ? AND timestamp = ?", (topic_id, last))
    with pytest.raises(BagReadError, match=r"/mono/image_raw has 3 messages .* ends after /mono/image_raw message 1"):
        compress_bag(source, tmp_path / "out", ["/mono/image_raw"], codec, 0)
    assert not (tmp_path / "out").exists()


def test_corrupt_chunk_mid_file_names_the_last_message_read(tmp_path, codec):
    source = tmp_path / "in"
    build_bag(source, instants=12, compression=CompressionMode.STORAGE)  # > 1 MiB: two chunks
    (file,) = source.glob("*.mcap")
    with Reader(source) as reader:
        chunks = reader.storage.storages[0].chunks
        assert len(chunks) >= 2, "need a second chunk to corrupt"
        second = chunks[1]
    data = bytearray(file.read_bytes())
    middle = second.chunk_start_offset + 80 + second.compressed_size // 2
    data[middle : middle + 64] = bytes(64)
    file.write_bytes(bytes(data))
    with pytest.raises(BagReadError, match=r"unreadable after bag message \d+ \(/\S+ message \d+\)"):
        compress_bag(source, tmp_path / "out", ["/mono/image_raw"], codec, 0)
    assert not (tmp_path / "out").exists()


def test_output_is_refused_without_force_and_never_the_input(tmp_path, codec):
    source, out = tmp_path / "in", tmp_path / "out"
    build_bag(source, instants=1)
    out.mkdir()
    with pytest.raises(OutputError, match="exists .*--force"):
        compress_bag(source, out, CAMERAS[:1], codec, 0)
    for target in (source, source / "sub", tmp_path):
        with pytest.raises(OutputError, match="must not be, contain or lie inside the input"):
            compress_bag(source, target, CAMERAS[:1], codec, 0, force=True)
    compress_bag(source, out, CAMERAS[:1], codec, 0, force=True)
    assert (out / "metadata.yaml").exists() and (out / "out.mcap").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_interrupt_leaves_no_output(tmp_path, codec, monkeypatch):
    source, out = tmp_path / "in", tmp_path / "out"
    build_bag(source, instants=2)
    calls = []
    encode = codec.encode

    def interrupted(image, quality):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return encode(image, quality)

    monkeypatch.setattr(codec, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compress_bag(source, out, CAMERAS, codec, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_decompress_refuses_another_model(tmp_path, round_trip, codec):
    other = ParaHydraCodec(codec.model, ModelIdentity("other", "0" * 16))
    with pytest.raises(FrameError, match=r"coded by model tiny-test .* decoder holds other"):
        decompress_bag(round_trip.compressed, tmp_path / "out", other)
    assert not (tmp_path / "out").exists()


def test_benchmark_runs_end_to_end(tmp_path, checkpoint):
    """``bench/bag.py --quick``, shrunk further to keep this file fast."""
    spec = importlib.util.spec_from_file_location("bench_bag", Path(__file__).resolve().parents[1] / "bench" / "bag.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--model", str(checkpoint), "--groups", "3", "--height", "64", "--width", "96",
                       "--qualities", "0", "--jpeg-images", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    methods = [row["method"] for row in result["rows"]]
    assert methods == ["raw", "rosbag2 zstd mcap-chunks", "rosbag2 zstd file", "rosbag2 zstd message",
                       "ParaHydra", "JPEG @ equal PSNR"]
    parahydra = result["rows"][4]
    assert result["frames"] == 9 and 0 < parahydra["ratio"] < 0.5 and parahydra["encode_fps"] > 0


# -- issue 14: bags lose nothing ---------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_leftover_staging_of_a_killed_run_is_removed_and_named(tmp_path, codec):
    """A run killed with SIGKILL leaves ``OUT.partial-<pid>/``; the next run removes it, in one line,
    and leaves alone the staging folder of a process that is still running."""
    source, out = tmp_path / "in", tmp_path / "out"
    build_bag(source, instants=1)
    dead = tmp_path / f"out.partial-{_dead_pid()}"
    (dead / "out").mkdir(parents=True)
    (dead / "out" / "out.mcap").write_bytes(b"\x89MCAP0\r\nhalf a bag")
    alive = tmp_path / f"out.partial-{os.getppid()}"
    alive.mkdir()
    other = tmp_path / f"other.partial-{_dead_pid()}"  # another output's: not ours to remove
    other.mkdir()
    lines = []
    summary = compress_bag(source, out, CAMERAS[:1], codec, 0, notice=lines.append)
    assert not dead.exists() and alive.exists() and other.exists()
    assert len(lines) == 1 and str(dead) in lines[0] and "removed" in lines[0]
    assert summary.notes == lines
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in", "out", alive.name, other.name])


def test_killed_compress_leftover_is_cleaned_by_the_next_run(tmp_path, codec, checkpoint):
    """The real thing: ``parahydra bag compress`` SIGKILLed while it writes, then run again."""
    source, out = tmp_path / "in", tmp_path / "out"
    build_bag(source, instants=INSTANTS)
    script = ("import sys, os, signal\n"
              "from parahydra_ros.bagtools import writing\n"
              "write = writing.OutputBag.write\n"
              "def killing(self, *a):\n"
              "    write(self, *a)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "writing.OutputBag.write = killing\n"
              "from parahydra_ros.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", script, "bag", "compress", str(source), str(out), "--cameras",
                           CAMERAS[0], "--model", str(checkpoint), "--no-progress"], capture_output=True, timeout=900)
    assert done.returncode == -signal.SIGKILL
    (leftover,) = tmp_path.glob("out.partial-*")
    lines = []
    compress_bag(source, out, CAMERAS[:1], codec, 0, notice=lines.append)
    assert not leftover.exists() and len(lines) == 1 and str(leftover) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_keep_bad_frames_copies_them_unchanged_and_reports_them(tmp_path, codec):
    source, out, restored = tmp_path / "in", tmp_path / "out", tmp_path / "restored"
    build_bag(source, instants=3, bad={(1, 1): _short_data, (0, 2): _truncated_cdr})
    bad = {topic: messages for topic, messages in read_bag(source).items()}
    bad_cam1, bad_cam0 = bad["/cam1/image_raw"][1], bad["/cam0/image_raw"][2]
    with pytest.raises(FrameError, match=r"/cam1/image_raw message 1"):  # the default: refuse, name the first
        compress_bag(source, out, CAMERAS, codec, 0)
    assert not out.exists()
    summary = compress_bag(source, out, CAMERAS, codec, 0, keep_bad_frames=True)
    written = read_bag(out)
    assert written["/cam1/image_raw"] == [bad_cam1] and written["/cam0/image_raw"] == [bad_cam0]
    assert len(written[latent_topic("/cam1/image_raw")]) == 2 and len(written[latent_topic("/cam0/image_raw")]) == 3
    assert len(summary.bad_frames) == 2
    assert summary.topics["/cam1/image_raw"].kept_bad == 1 and summary.topics["/cam0/image_raw"].kept_bad == 1
    text = format_summary(summary)
    assert "2 malformed frame(s) copied unchanged" in text
    assert re.search(r"/cam1/image_raw message 1 \(bag message \d+\): cannot convert the image", text)
    assert re.search(r"/cam0/image_raw message 2 \(bag message \d+\): cannot deserialize", text)
    # decompress puts them back beside the restored images, in log-time order
    decompress_bag(out, restored, codec)
    back = read_bag(restored)
    assert len(back["/cam1/image_raw"]) == 3 and bad_cam1 in back["/cam1/image_raw"]
    assert len(back["/cam0/image_raw"]) == 4 and bad_cam0 in back["/cam0/image_raw"]


def test_output_mcap_is_chunk_compressed_and_read_back_by_rosbags(tmp_path, codec):
    source, out = tmp_path / "in", tmp_path / "out"
    build_bag(source, instants=3)
    summary = compress_bag(source, out, CAMERAS[:2], codec, 0)
    with Reader(out) as reader:
        chunks = reader.storage.storages[0].chunks
        assert chunks and {c.compression for c in chunks} == {"zstd"}
    written, original = read_bag(out), read_bag(source)
    for topic in OTHER + CAMERAS[2:]:
        assert written[topic] == original[topic]
    imu = summary.topics["/imu"]
    assert imu.bytes_zstd is not None and 0 < imu.bytes_zstd < imu.bytes_out / 2
    assert all(t.bytes_zstd for t in summary.topics.values())
    text = format_summary(summary)
    assert "zstd" in text.splitlines()[0] and "≈ its size on disk" in text
    plain = compress_bag(source, tmp_path / "plain", CAMERAS[:2], codec, 0, storage="sqlite3")
    assert all(t.bytes_zstd is None for t in plain.topics.values())


def _long_data(ts, msgtype, msg):
    msg.data = np.concatenate([msg.data, np.full(77, 9, np.uint8)])  # legal: data longer than height × step
    return bytes(ts.serialize_cdr(msg, msgtype))


def test_image_data_longer_than_height_times_step_is_accepted_and_counted(tmp_path, codec):
    source, out = tmp_path / "in", tmp_path / "out"
    build_bag(source, instants=3, bad={(0, 1): _long_data, (3, 2): _long_data})
    summary = compress_bag(source, out, CAMERAS, codec, 0)
    assert summary.topics["/cam0/image_raw"].long_data == 1 and summary.topics["/mono/image_raw"].long_data == 1
    assert summary.topics["/cam1/image_raw"].long_data == 0 and summary.long_data == 2
    assert "/cam0/image_raw: 1 image(s) with data longer than height × step" in format_summary(summary)
    assert len(read_bag(out)[latent_topic("/cam0/image_raw")]) == 4  # 3 instants and the extra frame


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["imports", "writing"])
def test_interrupted_compress_prints_one_line_and_exits_130(tmp_path, checkpoint, moment):
    """Ctrl-C to a real ``parahydra bag compress``, while it still imports torch and the codec or
    once it writes: one line on stderr, exit status 130, nothing left beside the input."""
    source, out = tmp_path / "in", tmp_path / "out"
    build_bag(source, instants=INSTANTS)
    process = subprocess.Popen([sys.executable, "-m", "parahydra_ros.cli", "bag", "compress", str(source), str(out),
                                "--cameras", ",".join(CAMERAS), "--model", str(checkpoint), "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    if moment == "imports":
        time.sleep(0.5)  # importing torch alone takes longer
        assert not list(tmp_path.glob("out.partial-*"))
    else:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob("out.partial-*")):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert len(stderr.strip().splitlines()) == 1 and "interrupted" in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]

"""``parahydra demo`` and ``bench/pipeline.py``: the real pipeline (node processes over DDS) end to end.

One demo run (2 cameras, 3 groups of 192x128, a tiny model trained a few steps: its
reconstructions are poor, the plumbing is what is checked) feeds the table, image, JSON and
benchmark tests; one more start is interrupted to check that no node outlives the demo.
The bag source is checked on its own (no pipeline).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

from codec_fixtures import photo, tiny_checkpoint  # noqa: E402

from parahydra_ros import cli  # noqa: E402
from parahydra_ros.demo import command as demo  # noqa: E402
from parahydra_ros.errors import UserError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
W, H, CAMERAS, FRAMES = 192, 128, 2, 3


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """40 training steps: the demo's numbers need a model, not a good one."""
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", steps=40)


@pytest.fixture(scope="module")
def demo_run(model, tmp_path_factory):
    """``parahydra demo`` once: its exit status, printed output, output folder and pipeline results."""
    out = tmp_path_factory.mktemp("demo") / "out"
    results = {}
    original = demo.run

    def keep(spec, folder):
        results["pipeline"] = original(spec, folder)
        return results["pipeline"]

    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        patch.setattr(demo, "run", keep)
        status = cli.main(["demo", "--model", str(model), "--cameras", str(CAMERAS), "--frames", str(FRAMES),
                           "--size", f"{W}x{H}", "--rd-groups", "1", "--out", str(out)])
    return status, stdout.getvalue(), stderr.getvalue(), out, results.get("pipeline")


def _table(printed: str) -> dict[str, dict[str, str]]:
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["camera", "frames"])
    titles = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip() or line.split()[0] not in [f"cam{i}" for i in range(CAMERAS)] + ["all"]:
            break
        cells = line.split()
        assert len(cells) == len(titles), line
        rows[cells[0]] = dict(zip(titles, cells))
    return rows


@pytest.mark.slow
def test_demo_prints_a_row_of_finite_numbers_per_camera(demo_run):
    status, printed, errors, out, _ = demo_run
    assert status == 0, errors[-3000:]
    rows = _table(printed)
    assert set(rows) == {"cam0", "cam1", "all"}
    for camera in ("cam0", "cam1"):
        row = rows[camera]
        assert int(row["frames"]) == FRAMES
        bpp, ratio, psnr, ssim = (float(row[k]) for k in ("bpp", "x raw", "PSNR dB", "MS-SSIM"))
        assert 0 < bpp < 24 and ratio > 1 and 3 < psnr < 60 and 0 < ssim <= 1
        assert ratio == pytest.approx(24 / bpp, rel=0.02)  # raw rgb8 is 24 bpp (+ the headers)
        for key in ("encode ms p50/p95", "decoder ms p50/p95", "capture->image ms p50/p95"):
            p50, p95 = (float(v) for v in row[key].split("/"))
            assert 0 <= p50 <= p95 < 60_000, (key, row[key])
        if row["x JPEG"] == "-":  # the tiny model is below JPEG's lowest quality: said why
            assert f"{camera}: no JPEG ratio: target PSNR" in printed
        else:
            assert math.isfinite(float(row["x JPEG"]))
    assert f"{FRAMES} of {FRAMES} groups came back from every camera" in printed
    assert str(out) in printed and "ROS_DOMAIN_ID=" in printed


@pytest.mark.slow
def test_demo_writes_the_side_by_side_image_rd_plot_and_json(demo_run):
    status, _, _, out, results = demo_run
    assert status == 0
    image = cv2.imread(str(out / "side_by_side.png"))
    assert image.shape == (CAMERAS * H, 3 * W, 3)  # rows: cameras; original | reconstruction | error
    assert (out / "side_by_side.png").stat().st_size > 20_000 and image.std() > 10
    original, reconstruction = image[:H, :W], image[:H, W:2 * W]
    assert not np.array_equal(original, reconstruction)
    assert (out / "rd.png").stat().st_size > 10_000
    report = json.loads((out / "demo.json").read_text())
    assert report["groups"] == {"measured": FRAMES, "complete": FRAMES, "lost": 0}
    assert report["model"]["name"] == "tiny-test" and report["settings"]["width"] == W
    cams = {row["camera"]: row for row in report["cameras"]}
    assert cams["cam0"]["frames"] == FRAMES and cams["all"]["frames"] == CAMERAS * FRAMES
    # the bytes on the wire are the latents' own: the payload plus the message's fields
    frames = results.frames["cam0"]
    assert all(0 < f.payload_bytes < f.latent_bytes < f.payload_bytes + 400 for f in frames)
    assert cams["cam0"]["bpp"] == pytest.approx(8 * sum(f.latent_bytes for f in frames) / (FRAMES * W * H))
    decoder = report["nodes"]["/parahydra_decoder"]
    assert decoder["groups_complete"] >= FRAMES and decoder.get("groups_partial", 0) == 0
    assert set(report["rd"]["curves"]) >= {"parahydra-joint", "parahydra-separate", "jpeg"}
    assert (out / "pipeline.yaml").is_file() and len(list((out / "logs").glob("*.log"))) == CAMERAS + 1


@pytest.mark.slow
def test_demo_leaves_no_node_running(demo_run):
    _, _, errors, _, _ = demo_run
    pids = [int(p) for p in re.findall(r"\[launch\] started .* \(pid (\d+)\)", errors)]
    assert len(pids) == CAMERAS + 1
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
def test_benchmark_reports_a_run_pipeline_result(demo_run, monkeypatch, capsys, tmp_path):
    """bench/pipeline.py's table and JSON from ``run_pipeline``'s results (the demo's run, reused)."""
    results = demo_run[4]
    import parahydra_ros.demo.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run_pipeline", lambda spec, work, say=print: results)
    spec = importlib.util.spec_from_file_location("bench_pipeline", REPO / "bench" / "pipeline.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--model", str(results.spec.model), "--cameras", str(CAMERAS),
                       "--json", str(tmp_path / "pipeline.json")]) == 0
    printed = capsys.readouterr().out
    assert "fps/cam" in printed and "latency p50 ms" in printed
    (row,) = json.loads((tmp_path / "pipeline.json").read_text())["rows"]
    assert row["cameras"] == CAMERAS and row["frames"] == FRAMES and row["fps_per_camera"] > 0
    assert row["latency_p50_ms"] <= row["latency_p95_ms"] and row["ratio_raw"] > 1
    assert row["latent_bytes"] < row["raw_bytes"]


@pytest.mark.slow
def test_interrupt_stops_every_node(model, tmp_path, capsys):
    """Ctrl-C (or SIGTERM, which the demo turns into the same) while the pipeline runs: no orphans."""
    from parahydra_ros.demo.pipeline import PipelineSpec, run_pipeline

    def interrupt(text):
        if text.startswith("pipeline up"):
            raise KeyboardInterrupt

    spec = PipelineSpec(cameras=("cam0",), frames=1, model=str(model), width=W, height=H)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(spec, tmp_path, say=interrupt)
    pids = [int(p) for p in re.findall(r"\[launch\] started .* \(pid (\d+)\)", capsys.readouterr().err)]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_missing_default_model_is_one_line(monkeypatch, tmp_path, capsys):
    import parahydra_ros.codec.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", tmp_path / "parahydra_small.pt")
    assert cli.main(["demo", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "parahydra_small.pt is missing" in error and "--model" in error
    assert not (tmp_path / "out").exists()


def test_bag_source_groups_the_camera_topics_by_stamp(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from parahydra_ros.codec import image_conversions as conv

    store = get_typestore(Stores.ROS2_KILTED)
    Image, Header, Time = (store.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                    "builtin_interfaces/msg/Time"))
    rng = np.random.default_rng(0)
    views = {}
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        topics = {t: writer.add_connection(t, "sensor_msgs/msg/Image", typestore=store)
                  for t in ("/left/image_raw", "/right/image_raw", "/other/image")}
        for k in range(4):
            for i, (topic, encoding) in enumerate((("/left/image_raw", "rgb8"), ("/right/image_raw", "bgr8"))):
                if (k, i) == (1, 1):
                    continue  # the right camera misses instant 1
                stamp = 10**9 + k * 10**8 + i * 3 * 10**6  # 3 ms apart: one group
                pixels = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
                views[(k, i)] = pixels
                fields = conv.pixels_to_image(pixels, encoding)
                msg = Image(header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=topic),
                            height=8, width=12, encoding=encoding, is_bigendian=0, step=fields["step"],
                            data=np.frombuffer(fields["data"], np.uint8))
                writer.write(topics[topic], stamp, bytes(store.serialize_cdr(msg, "sensor_msgs/msg/Image")))
    groups = demo.bag_groups(tmp_path / "bag", ["/right/image_raw", "/left/image_raw"], count=10)
    assert len(groups) == 3  # instant 1 has no right view
    for group, k in zip(groups, (0, 2, 3)):
        np.testing.assert_array_equal(group[0], views[(k, 1)])  # in --topics order, as RGB
        np.testing.assert_array_equal(group[1], views[(k, 0)])
    assert len(demo.bag_groups(tmp_path / "bag", ["/left/image_raw", "/right/image_raw"], count=2)) == 2
    with pytest.raises(UserError, match=r"/front does not exist in the bag \(its image topics: /left/image_raw, /other/image"):
        demo.bag_groups(tmp_path / "bag", ["/front"], count=1)
    assert demo.camera_names(["/left/image_raw", "/left/image_raw/", "/3d/cam"]) == [
        "left_image_raw", "left_image_raw_2", "cam_3d_cam"]


def test_jpeg_ratio_at_equal_psnr():
    """A reconstruction at JPEG quality 50 costs JPEG about its own bytes at that PSNR."""
    from parahydra_ros.demo.pipeline import Frame
    from parahydra_ros.demo.report import camera_summary
    from parahydra_ros.eval.anchors import ANCHORS

    frames = []
    for shift in (0, 8, 16):
        original = photo(H, W, shift)
        coded = ANCHORS["jpeg"].encode_decode(original, 50)
        frames.append(Frame("cam0", shift, original=original, image_bytes=3 * H * W + 60,
                            latent_bytes=coded.num_bytes + 100, payload_bytes=coded.num_bytes, encode_ms=1.0,
                            latent_ns=shift + 10**6, reconstruction=coded.decoded, reconstructed_ns=shift + 3 * 10**6))
    row = camera_summary("cam0", frames)
    assert row["frames"] == 3 and 25 < row["psnr"] < 45
    assert row["ratio_jpeg"] == pytest.approx(1.0, abs=0.1)  # JPEG's own curve through its own point
    assert row["latency_ms"] == {"p50": pytest.approx(3.0, abs=0.1), "p95": pytest.approx(3.0, abs=0.1)}
    assert row["ratio_raw"] == pytest.approx((3 * H * W + 60) / (sum(f.payload_bytes for f in frames) / 3 + 100))

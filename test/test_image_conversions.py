"""Image message contents ↔ codec pixels, and the node parameter tables: no ROS needed."""
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from parahydra_ros.codec import image_conversions as conv
from parahydra_ros.ros.diagnostics import NodeStats, RateLimiter
from parahydra_ros.pipeline.parameters import NODES, check_parameters, markdown_table
from parahydra_ros.sync.worker import DropOldestWorker

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
MONO = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)


def _msg(fields):
    return SimpleNamespace(**fields)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_round_trip_to_rgb(encoding):
    fields = conv.pixels_to_image(RGB, encoding)
    assert (fields["height"], fields["width"], fields["encoding"]) == (5, 7, encoding)
    assert fields["step"] == 7 * conv.CHANNELS[encoding] and len(fields["data"]) == 5 * fields["step"]
    raw = np.frombuffer(fields["data"], np.uint8).reshape(5, 7, -1)
    first = {"rgb8": 0, "rgba8": 0, "bgr8": 2, "bgra8": 2}[encoding]
    assert np.array_equal(raw[:, :, first], RGB[:, :, 0])  # channel order as the encoding says
    if raw.shape[2] == 4:
        assert (raw[:, :, 3] == 255).all()
    back = conv.msg_to_pixels(_msg(fields))
    assert back.dtype == np.uint8 and np.array_equal(back, RGB)


def test_mono8_round_trip_and_cross_conversions():
    fields = conv.pixels_to_image(MONO, "mono8")
    assert fields["step"] == 7 and np.array_equal(conv.msg_to_pixels(_msg(fields)), MONO)
    as_rgb = conv.msg_to_pixels(_msg(conv.pixels_to_image(MONO, "rgb8")))
    assert np.array_equal(as_rgb, np.repeat(MONO[:, :, None], 3, axis=2))
    gray = conv.msg_to_pixels(_msg(conv.pixels_to_image(RGB, "mono8")))
    assert np.array_equal(gray, cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY))


def test_row_padding_is_skipped_and_short_data_refused():
    step = 7 * 3 + 5
    rows = np.zeros((5, step), np.uint8)
    rows[:, : 7 * 3] = RGB.reshape(5, -1)
    padded = _msg(dict(encoding="rgb8", height=5, width=7, step=step, data=rows.tobytes()))
    assert np.array_equal(conv.msg_to_pixels(padded), RGB)
    unpadded_last_row = rows.tobytes()[:-5]
    assert np.array_equal(conv.image_to_pixels("rgb8", 5, 7, step, unpadded_last_row), RGB)
    with pytest.raises(conv.MalformedImage, match="needs 125 bytes"):
        conv.image_to_pixels("rgb8", 5, 7, step, rows.tobytes()[:100])
    with pytest.raises(conv.MalformedImage, match="step 20 is smaller"):
        conv.image_to_pixels("rgb8", 5, 7, 20, rows.tobytes())


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "bayer_rggb8", "yuv422", "32FC1", "8UC3"])
def test_unsupported_encodings_are_refused_with_their_name(encoding):
    with pytest.raises(conv.UnsupportedEncoding) as info:
        conv.image_to_pixels(encoding, 2, 2, 8, bytes(16))
    assert info.value.encoding == encoding
    assert repr(encoding) in str(info.value) and "rgb8" in str(info.value)


def test_compressed_images_decode_to_rgb_or_mono():
    bgr = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)
    png = cv2.imencode(".png", bgr)[1].tobytes()
    pixels, encoding = conv.compressed_to_pixels("png", png)
    assert encoding == "rgb8" and np.array_equal(pixels, RGB)
    pixels, encoding = conv.compressed_to_pixels("mono8; png compressed", cv2.imencode(".png", MONO)[1])
    assert encoding == "mono8" and np.array_equal(pixels, MONO)
    smooth = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_LINEAR)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    pixels, encoding = conv.compressed_to_pixels("rgb8; jpeg compressed bgr8", jpeg.tobytes())
    assert encoding == "rgb8" and pixels.shape == (48, 64, 3)
    assert np.abs(pixels.astype(int) - smooth).mean() < 4  # the camera's JPEG, decoded as RGB
    with pytest.raises(conv.UnsupportedEncoding, match="uint16"):
        conv.compressed_to_pixels("png", cv2.imencode(".png", MONO.astype(np.uint16) * 256)[1])
    with pytest.raises(conv.MalformedImage, match="could not be decoded"):
        conv.compressed_to_pixels("jpeg", b"\xff\xd8 not a jpeg")
    assert conv.compressed_format_key("rgb8; jpeg compressed bgr8") == "jpeg"


def test_crop_and_resize():
    image = np.arange(40 * 60, dtype=np.uint8).reshape(40, 60)
    assert np.array_equal(conv.crop_and_resize(image, (10, 5, 20, 0)), image[5:, 10:30])
    assert conv.crop_and_resize(image, size=(30, 0)).shape == (20, 30)  # aspect kept
    assert conv.crop_and_resize(image, (0, 0, 30, 20), (0, 40)).shape == (40, 60)
    assert conv.crop_and_resize(image) is not None and conv.crop_and_resize(image).shape == (40, 60)
    with pytest.raises(ValueError, match="outside the 60x40 image"):
        conv.crop_and_resize(image, (50, 0, 20, 0))


def test_drop_oldest_worker_keeps_the_newest_and_counts_drops():
    release, started = threading.Event(), threading.Event()
    handled, dropped = [], []

    def handler(item):
        started.set()
        release.wait(5)
        handled.append(item)

    worker = DropOldestWorker(handler, maxsize=2, on_drop=dropped.append)
    try:
        worker.submit(0)
        assert started.wait(5)  # 0 is running; 1..5 compete for the 2 slots
        accepted = [worker.submit(item) for item in range(1, 6)]
        assert accepted == [True, True, False, False, False] and worker.pending == 3
        release.set()
        assert worker.wait_idle(5)
        assert handled == [0, 4, 5] and dropped == [1, 2, 3] and worker.dropped == 3
    finally:
        release.set()
        assert worker.stop()
    assert worker.submit(9) is False


def test_worker_threads_run_at_once_and_release_results_in_order():
    running, peak, lock = 0, 0, threading.Lock()
    released, errors = [], []

    def handler(item):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05 * (5 - item))  # later items finish first
        with lock:
            running -= 1
        if item == 2:
            raise ValueError("bad frame")
        return item * 10

    worker = DropOldestWorker(handler, maxsize=8, threads=2,
                              on_result=lambda item, result: released.append((item, result)),
                              on_error=lambda item, error: errors.append((item, str(error))))
    try:
        for item in range(5):
            worker.submit(item)
        assert worker.wait_idle(10)
    finally:
        assert worker.stop()
    assert peak == 2
    assert released == [(0, 0), (1, 10), (3, 30), (4, 40)] and errors == [(2, "bad frame")]


def test_worker_reports_handler_errors_and_goes_on():
    errors = []

    def handler(item):
        if item == "bad":
            raise RuntimeError("boom")

    worker = DropOldestWorker(handler, maxsize=4, on_error=lambda item, e: errors.append((item, str(e))))
    try:
        for item in ("bad", "good"):
            worker.submit(item)
        assert worker.wait_idle(5)
        assert errors == [("bad", "boom")] and worker.done == 2
    finally:
        worker.stop()


def test_stats_percentiles_and_sizes():
    stats = NodeStats(window=100)
    for value in range(1, 101):
        stats.observe("decode_ms", value)
    stats.coded(1000, 64 * 64, 64 * 64 * 3)
    stats.coded(3000, 64 * 64, 64 * 64 * 3)
    stats.count("frames_in", 2)
    snap = stats.snapshot()
    assert snap["frames_in"] == 2 and snap["decode_ms_count"] == 100
    assert snap["decode_ms_p50"] == pytest.approx(50.5) and snap["decode_ms_p99"] == pytest.approx(99.01)
    assert snap["decode_ms_max"] == 100 and snap["decode_ms_mean"] == pytest.approx(50.5)
    assert snap["bits_per_pixel"] == pytest.approx(8 * 4000 / (2 * 4096))
    assert snap["compression_ratio"] == pytest.approx(2 * 3 * 4096 / 4000)


def test_rate_limiter_is_per_key_and_counts_suppressed():
    now = [0.0]
    limiter = RateLimiter(5.0, clock=lambda: now[0])
    assert limiter.allow(("cam0", "CorruptPayload")) == 0
    assert limiter.allow(("cam0", "CorruptPayload")) is None
    assert limiter.allow(("cam1", "CorruptPayload")) == 0  # another camera is not hidden
    now[0] = 6.0
    assert limiter.allow(("cam0", "CorruptPayload")) == 1


def test_parameter_tables_are_complete_and_checked():
    for executable, table in NODES.items():
        for spec in table.values():
            assert spec.description and spec.check(spec.default) == spec.default, (executable, spec.name)
        assert markdown_table(table).count("\n") == len(table) + 1
    assert check_parameters(NODES["decoder_node"], {"slop": 1}, "x") == {"slop": 1.0}
    with pytest.raises(ValueError, match="unknown parameter 'slope'"):
        check_parameters(NODES["decoder_node"], {"slope": 0.1}, "x")
    with pytest.raises(ValueError, match="'quality' must be of type integer"):
        check_parameters(NODES["encoder_node"], {"quality": "high"}, "x")

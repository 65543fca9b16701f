"""Encoder and decoder nodes over real DDS (rclpy, Fast DDS on loopback) with a tiny ParaHydra model.

Every node runs in this process on one executor thread; images go in as a camera
would publish them and come out of the joint decoder. The tiny model is untrained
(seeded), so its reconstructions are poor (4–9 dB PSNR, depending on the model code);
what the tests check is that the pipeline delivers exactly what the codec core
computes offline for the same images — bit-exact payloads and reconstructions — with
the right stamps, frames, sizes and encodings, and what it does when things go wrong.
The fidelity floor (PSNR_FLOOR_DB) is checked with the packaged default model, when
the package ships one.
"""
from __future__ import annotations

import array
import re
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
torch = pytest.importorskip("torch")

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from parahydra_ros.codec import container  # noqa: E402
from parahydra_ros.codec.api import ParaHydraCodec  # noqa: E402
from parahydra_ros.codec.checkpoint import save_checkpoint  # noqa: E402
from parahydra_ros.codec.errors import PayloadError  # noqa: E402
from parahydra_ros.model.configs import get_config  # noqa: E402
from parahydra_ros.model.parahydra import ParaHydra  # noqa: E402
from parahydra_ros.msg import CompressedLatent  # noqa: E402
from parahydra_ros.codec import image_conversions as conv  # noqa: E402
from parahydra_ros.ros.decoder_node import DecoderNode, resolve_streams  # noqa: E402
from parahydra_ros.ros.diagnostics import parse_status  # noqa: E402
from parahydra_ros.ros.encoder_node import EncoderNode  # noqa: E402
from parahydra_ros.ros.runtime import NodeSetupError  # noqa: E402

HEIGHT, WIDTH = 120, 180  # not multiples of 64: the codec pads and the decoder crops back
CAMERAS = ("cam0", "cam1", "cam2")
ENCODINGS = ("rgb8", "bgr8", "mono8")  # one camera of each kind
PSNR_FLOOR_DB = 27.0  # packaged model at the nodes' default quality 3: 29.8 / 31.4 dB on these views, less a margin
TIMEOUT = 40.0  # s, for anything to arrive (2 shared cores, several neural nets)


# -- fixtures ----------------------------------------------------------------------------------
def _checkpoint(path, seed, name):
    torch.manual_seed(seed)
    save_checkpoint(path, ParaHydra(get_config("tiny")), name=name)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", 0, "tiny-test")


@pytest.fixture(scope="module")
def codec(tiny_checkpoint):
    """The offline reference: the codec core, as the nodes load it."""
    return ParaHydraCodec.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def groups():
    """Four instants of three cameras in a row moving through a textured scene (uint8 RGB)."""
    from parahydra_ros.data.synthetic import SyntheticRig

    sequence = SyntheticRig(3, HEIGHT, WIDTH).sequence(seed=3, num_frames=4)
    return [sequence.render(frame).views for frame in range(4)]


def _coded_pixels(rgb, encoding):
    """What the encoder codes for a camera publishing ``rgb`` in ``encoding``."""
    return conv.msg_to_pixels(_image_msg(rgb, encoding))


def _image_msg(pixels, encoding, stamp=None, frame_id=""):
    fields = conv.pixels_to_image(pixels, encoding)
    msg = Image(height=fields["height"], width=fields["width"], encoding=encoding, step=fields["step"])
    msg.data = array.array("B", fields["data"])
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def _latent_msg(codec, payload, camera, stamp, encoding="rgb8", **changes):
    try:
        header = container.read_header(payload)
    except PayloadError:  # a corrupt payload: the message keeps the camera's size
        header = None
    msg = CompressedLatent(camera=camera, encoding=encoding, model_name=codec.identity.name,
                           model_hash=codec.identity.hash, format_version=container.FORMAT_VERSION)
    msg.header.stamp = stamp
    msg.height, msg.width = (header.height, header.width) if header else (HEIGHT, WIDTH)
    if header:  # the fields an encoder node copies from its payload
        msg.model_name, msg.model_hash, msg.quality = header.model_name, header.model_hash, header.quality
    msg.payload = array.array("B", payload)
    msg.payload_size = len(payload)
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


class Probe:
    """A test node: publishes camera images / latents, records what comes back, per topic."""

    def __init__(self, context):
        self.node = Node("probe", context=context)
        self.lock = threading.Lock()
        self.received: dict[str, list] = {}
        self._publishers = {}

    def publisher(self, msg_type, topic):
        if topic not in self._publishers:
            self._publishers[topic] = self.node.create_publisher(msg_type, topic, 10)
        return self._publishers[topic]

    def record(self, msg_type, topic):
        self.received.setdefault(topic, [])

        def callback(msg):
            with self.lock:
                self.received[topic].append(msg)

        self.node.create_subscription(msg_type, topic, callback, 10)

    def got(self, topic):
        with self.lock:
            return list(self.received[topic])

    def stamp(self, offset_s=0.0):
        return (self.node.get_clock().now() + rclpy.duration.Duration(seconds=offset_s)).to_msg()


def wait_until(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def spinning(context, nodes):
    """Spin ``nodes`` on a background executor; destroy them afterwards."""
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.shutdown(timeout_sec=5.0)
        thread.join(5.0)
        for node in nodes:
            node.destroy_node()
        assert not thread.is_alive(), "executor thread did not stop"


def _connected(publisher, subscribers=1):
    return lambda: publisher.get_subscription_count() >= subscribers


def _encoder(context, camera, checkpoint=None, codec=None, **params):
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    if checkpoint is not None:
        overrides.append(Parameter("model", value=str(checkpoint)))
    return EncoderNode(context=context, namespace=f"/{camera}", codec=codec, parameter_overrides=overrides)


def _decoder(context, checkpoint=None, codec=None, **params):
    params.setdefault("cameras", [f"/{c}" for c in CAMERAS])
    params.setdefault("device", "cpu")
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    if checkpoint is not None:
        overrides.append(Parameter("model", value=str(checkpoint)))
    return DecoderNode(context=context, codec=codec, parameter_overrides=overrides)


# -- the tests ---------------------------------------------------------------------------------
def test_three_cameras_round_trip_with_stamps_sizes_encodings(ros_context, tiny_checkpoint, codec, groups):
    """3 encoders + 1 joint decoder, each loading the checkpoint named by its `model` parameter."""
    encoders = [_encoder(ros_context, c, tiny_checkpoint, quality=1) for c in CAMERAS]
    # A generous deadline: on a loaded machine the three encoders may finish far apart,
    # and this test is about complete groups (stragglers have their own test).
    decoder = _decoder(ros_context, tiny_checkpoint, diagnostics_period=0.3, partial_deadline=10.0)
    probe = Probe(ros_context)
    inputs = [probe.publisher(Image, f"/{c}/image") for c in CAMERAS]
    for c in CAMERAS:
        probe.record(Image, f"/{c}/image_reconstructed")
        probe.record(CompressedLatent, f"/{c}/latent")
    probe.record(__import__("diagnostic_msgs.msg", fromlist=["DiagnosticArray"]).DiagnosticArray,
                 "/diagnostics")
    with spinning(ros_context, [*encoders, decoder, probe.node]):
        for publisher in inputs:
            wait_until(_connected(publisher), what="encoder subscriptions")
        for encoder in encoders:
            wait_until(_connected(encoder.publisher, 2), what="decoder + probe on latent")
        stamps = []
        for k in range(2):
            stamps.append(probe.stamp())
            for i, c in enumerate(CAMERAS):
                inputs[i].publish(_image_msg(groups[k][i], ENCODINGS[i], stamps[-1], f"{c}_optical"))
            time.sleep(0.5)
        wait_until(lambda: all(len(probe.got(f"/{c}/image_reconstructed")) == 2 for c in CAMERAS),
                   what="6 reconstructed images")

        for k, stamp in enumerate(stamps):
            coded = [_coded_pixels(groups[k][i], ENCODINGS[i]) for i in range(3)]
            payloads = [codec.encode(p, 1) for p in coded]
            reference = codec.decode(payloads)
            for i, c in enumerate(CAMERAS):
                latent = next(m for m in probe.got(f"/{c}/latent") if m.header.stamp == stamp)
                assert bytes(latent.payload) == payloads[i], "encoder node payload differs from codec.encode"
                assert (latent.camera, latent.quality, latent.encoding) == (c, 1, ENCODINGS[i])
                assert (latent.height, latent.width, latent.payload_size) == (HEIGHT, WIDTH, len(payloads[i]))
                assert latent.model_hash == codec.identity.hash and latent.header.frame_id == f"{c}_optical"
                image = next(m for m in probe.got(f"/{c}/image_reconstructed") if m.header.stamp == stamp)
                assert image.header.frame_id == f"{c}_optical"
                assert (image.height, image.width, image.encoding) == (HEIGHT, WIDTH, ENCODINGS[i])
                pixels = conv.msg_to_pixels(image)
                assert np.array_equal(pixels, reference[i]), f"{c}: not the codec's joint reconstruction"
                assert _psnr(pixels, coded[i]) == pytest.approx(_psnr(reference[i], coded[i]))

        stats = decoder.stats.snapshot()
        assert (stats["groups_complete"], stats.get("groups_partial", 0), stats["frames_out"]) == (2, 0, 6)
        assert stats["decode_ms_count"] == 2 and stats["bits_per_pixel"] > 0
        assert all(e.stats.counter("frames_out") == 2 for e in encoders)
        wait_until(lambda: {parse_status(s).get("frames_out") for a in probe.got("/diagnostics") for s in a.status
                            if s.name == "/parahydra_decoder"} >= {6}, timeout=10, what="decoder diagnostics")
        status = next(parse_status(s) for a in reversed(probe.got("/diagnostics")) for s in a.status
                      if s.name == "/parahydra_decoder")
        for key in ("decode_ms_p50", "decode_ms_p99", "latency_ms_p90", "bits_per_pixel", "compression_ratio",
                    "groups_complete", "frames_in"):
            assert key in status
        assert status["compression_ratio"] > 1
        wait_until(lambda: any(s.name == "/cam1/parahydra_encoder" and "encode_ms_p50" in parse_status(s)
                               for a in probe.got("/diagnostics") for s in a.status), timeout=10,
                   what="encoder diagnostics")


def test_a_stopped_camera_does_not_stop_the_others(ros_context, codec, groups, capfd):
    """cam2 stops while cam0 and cam1 stream on: after the deadline their views are decoded as
    partial groups (jointly, two views); cam2 is logged missing once, and back once when it returns.
    The latents come straight from the probe (coded offline), so the cameras' timing is exact."""
    decoder = _decoder(ros_context, codec=codec, partial_deadline=0.8)
    probe = Probe(ros_context)
    inputs = [probe.publisher(CompressedLatent, f"/{c}/latent") for c in CAMERAS]
    for c in CAMERAS:
        probe.record(Image, f"/{c}/image_reconstructed")
    out = lambda c: probe.got(f"/{c}/image_reconstructed")  # noqa: E731
    payloads = [[codec.encode(view, 1) for view in group] for group in groups]
    sent: dict[tuple[int, int], int] = {}  # stamp -> group index

    def stream(cameras, seconds, until=lambda: False):
        """Publish a group every 0.2 s (well within the deadline) from ``cameras``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            k = len(sent) % len(groups)
            stamp = probe.stamp()
            sent[(stamp.sec, stamp.nanosec)] = k
            for i in cameras:
                inputs[i].publish(_latent_msg(codec, payloads[k][i], CAMERAS[i], stamp))
            time.sleep(0.2)

    def pairs():
        """Stamps decoded for cam0 and cam1 but not cam2."""
        stamps = [{(m.header.stamp.sec, m.header.stamp.nanosec) for m in out(c)} for c in CAMERAS]
        return (stamps[0] & stamps[1]) - stamps[2]

    with spinning(ros_context, [decoder, probe.node]):
        for publisher in inputs:
            wait_until(_connected(publisher), what="decoder subscriptions")
        stream([0, 1, 2], TIMEOUT, until=lambda: decoder.stats.counter("groups_complete") >= 1)
        stream([0, 1], TIMEOUT, until=lambda: len(pairs()) >= 2)
        assert len(pairs()) >= 2, f"no partial groups while cam2 is stopped: {decoder.stats.snapshot()}"
        stats = decoder.stats.snapshot()
        assert stats["groups_partial"] >= 2 and stats["missing_cameras"] == "cam2"
        assert stats["missing_reports_cam2"] == 1
        for stamp in sorted(pairs())[:2]:
            k = sent[stamp]
            reference = codec.decode(payloads[k][:2])  # two views, jointly
            for i in (0, 1):
                image = next(m for m in out(CAMERAS[i]) if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp)
                assert np.array_equal(conv.msg_to_pixels(image), reference[i])

        complete_before = decoder.stats.counter("groups_complete")
        stream([0, 1, 2], TIMEOUT, until=lambda: decoder.stats.counter("returned_reports_cam2")
               and decoder.stats.counter("groups_complete") > complete_before)
        stats = decoder.stats.snapshot()
        assert stats["returned_reports_cam2"] == 1 and stats["missing_reports_cam2"] == 1
        assert stats["groups_complete"] > complete_before and stats["missing_cameras"] == ""
    logs = capfd.readouterr().err
    assert logs.count("camera cam2 (/cam2/latent) is missing") == 1
    assert logs.count("camera cam2 (/cam2/latent) is back") == 1
    assert "camera cam0 (/cam0/latent) is missing" not in logs
    assert "camera cam1 (/cam1/latent) is missing" not in logs


def test_bad_payloads_are_dropped_with_camera_and_reason(ros_context, tiny_checkpoint, codec, groups,
                                                         tmp_path, capfd):
    """Corrupt and foreign-model views, and messages that contradict their payload, are dropped and
    logged with a reason each; the others decode. A view of another size is decoded alone."""
    other = ParaHydraCodec.load(_checkpoint(tmp_path / "other.pt", 1, "tiny-other"))
    decoder = _decoder(ros_context, codec=codec, error_log_period=30.0)
    probe = Probe(ros_context)
    inputs = [probe.publisher(CompressedLatent, f"/{c}/latent") for c in CAMERAS]
    for c in CAMERAS:
        probe.record(Image, f"/{c}/image_reconstructed")
    out = lambda c: probe.got(f"/{c}/image_reconstructed")  # noqa: E731
    good = [[codec.encode(groups[k][i], 1) for i in range(3)] for k in range(2)]
    corrupt = bytearray(good[0][1])
    corrupt[len(corrupt) // 2] ^= 0xFF
    small = codec.encode(np.ascontiguousarray(groups[1][2][:64, :128]), 1)  # a 64x128 view
    with spinning(ros_context, [decoder, probe.node]):
        for publisher in inputs:
            wait_until(_connected(publisher), what="decoder subscriptions")

        def publish(payloads, changes=None):
            stamp = probe.stamp()
            for i, payload in enumerate(payloads):
                inputs[i].publish(_latent_msg(codec, payload, CAMERAS[i], stamp, **(changes or {}).get(i, {})))
            return stamp

        counts = {c: 0 for c in CAMERAS}

        def expect(delta):
            for c, n in delta.items():
                counts[c] += n
            wait_until(lambda: all(len(out(c)) == counts[c] for c in CAMERAS), what=f"outputs {counts}")

        publish([good[0][0], bytes(corrupt), good[0][2]])  # cam1 corrupted in transit
        expect({"cam0": 1, "cam2": 1})
        publish([good[0][0], bytes(corrupt), good[0][2]])  # again: counted, not logged again
        expect({"cam0": 1, "cam2": 1})
        publish([good[1][0], other.encode(groups[1][1], 1), good[1][2]])  # cam1 runs another model
        expect({"cam0": 1, "cam2": 1})
        mixed = publish([good[1][0], good[1][1], small])  # cam2 codes another size than the others
        expect({c: 1 for c in CAMERAS})  # every view decoded: cam0 and cam1 jointly, cam2 alone
        publish(good[1], {2: {"height": 64}})  # the message contradicts its payload
        expect({"cam0": 1, "cam1": 1})
        publish(good[1], {2: {"height": 64}})  # again: counted, not logged again
        expect({"cam0": 1, "cam1": 1})
        publish(good[1], {0: {"quality": 0}, 1: {"payload_size": 7}})  # two other fields
        expect({"cam2": 1})
        last = publish(good[1])  # and the pipeline goes on
        expect({c: 1 for c in CAMERAS})
        reference = codec.decode(good[1])
        for i, c in enumerate(CAMERAS):
            image = next(m for m in out(c) if m.header.stamp == last)
            assert np.array_equal(conv.msg_to_pixels(image), reference[i])
        pair, alone = codec.decode(good[1][:2]), codec.decode([small])
        for i, c in enumerate(CAMERAS):
            image = next(m for m in out(c) if m.header.stamp == mixed)
            assert np.array_equal(conv.msg_to_pixels(image), (pair + alone)[i])
        stats = decoder.stats.snapshot()
    assert stats["views_error_CorruptPayload"] == 2 and stats["views_error_ModelMismatch"] == 1
    assert stats["views_error_MessageHeightMismatch"] == 2
    assert stats["views_error_MessageQualityMismatch"] == 1 and stats["views_error_MessagePayloadSizeMismatch"] == 1
    assert stats["views_dropped"] == 7 and stats["groups_complete"] == 8
    logs = capfd.readouterr().err
    corrupt_lines = [line for line in logs.splitlines() if "CorruptPayload" in line]
    assert len(corrupt_lines) == 1 and "camera cam1 (/cam1/latent): dropped frame" in corrupt_lines[0]
    assert "camera cam1 (/cam1/latent)" in next(line for line in logs.splitlines() if "ModelMismatch" in line)
    size_lines = [line for line in logs.splitlines() if "MessageHeightMismatch" in line]
    assert len(size_lines) == 1 and "camera cam2" in size_lines[0]  # second one rate-limited
    assert "the message says height 64, its payload" in size_lines[0]
    assert "camera cam0" in next(line for line in logs.splitlines() if "MessageQualityMismatch" in line)
    assert "camera cam1" in next(line for line in logs.splitlines() if "MessagePayloadSizeMismatch" in line)


def test_encoder_runtime_quality_rate_limit_refusals_and_jpeg_input(ros_context, codec, groups, capfd):
    from rclpy.parameter_client import AsyncParameterClient

    raw = _encoder(ros_context, "cam0", codec=codec, quality=1)
    jpeg = _encoder(ros_context, "cam1", codec=codec, input_transport="compressed", quality=2)
    probe = Probe(ros_context)
    image_in = probe.publisher(Image, "/cam0/image")
    jpeg_in = probe.publisher(CompressedImage, "/cam1/image/compressed")
    probe.record(CompressedLatent, "/cam0/latent")
    probe.record(CompressedLatent, "/cam1/latent")
    latents = lambda c: probe.got(f"/{c}/latent")  # noqa: E731
    params = AsyncParameterClient(probe.node, "/cam0/parahydra_encoder")

    def set_params(**values):
        future = params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        wait_until(future.done, timeout=10, what="parameter service")
        return future.result().results

    with spinning(ros_context, [raw, jpeg, probe.node]):
        for publisher in (image_in, jpeg_in, raw.publisher, jpeg.publisher):
            wait_until(_connected(publisher), what="subscriptions")
        wait_until(lambda: params.wait_for_services(0.01), timeout=10, what="parameter services")
        image = _image_msg(groups[0][0], "rgb8", probe.stamp())

        image_in.publish(image)
        wait_until(lambda: len(latents("cam0")) == 1, what="first latent")
        assert latents("cam0")[0].quality == 1
        (result,) = set_params(quality=0)
        assert result.successful
        image_in.publish(image)
        wait_until(lambda: len(latents("cam0")) == 2, what="latent after the quality change")
        latest = latents("cam0")[-1]
        assert latest.quality == 0 and container.read_header(bytes(latest.payload)).quality == 0
        assert bytes(latest.payload) == codec.encode(groups[0][0], 0)
        (result,) = set_params(quality=codec.num_qualities)
        # refused by the descriptor's integer_range (rclpy words it "Min: 0, Max: N-1")
        assert not result.successful and f"Max: {codec.num_qualities - 1}" in result.reason
        (result,) = set_params(device="cuda")
        assert not result.successful  # set at start only
        assert raw.quality == 0

        refused = _image_msg(groups[0][0], "rgb8", probe.stamp())
        refused.encoding = "yuv422"
        for _ in range(3):
            image_in.publish(refused)
        wait_until(lambda: raw.stats.counter("frames_dropped_unsupported") == 3, what="3 refused frames")

        (result,) = set_params(max_rate=1.0)
        assert result.successful
        time.sleep(1.2)  # a full token
        before = raw.stats.counter("frames_out")
        for _ in range(4):
            image_in.publish(image)
            time.sleep(0.05)
        wait_until(lambda: raw.stats.counter("frames_dropped_rate") == 3, what="3 frames over max_rate")
        wait_until(lambda: len(latents("cam0")) == before + 1, what="1 frame within max_rate")
        time.sleep(0.3)
        assert raw.stats.counter("frames_out") == before + 1 and len(latents("cam0")) == before + 1

        smooth = groups[0][1]
        ok, data = __import__("cv2").imencode(".jpg", smooth[:, :, ::-1])
        jpeg_msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
        jpeg_msg.header.stamp = probe.stamp()
        jpeg_msg.data = array.array("B", data.tobytes())
        jpeg_in.publish(jpeg_msg)
        wait_until(lambda: len(latents("cam1")) == 1, what="latent of a JPEG frame")
        latent = latents("cam1")[0]
        assert (latent.encoding, latent.height, latent.width, latent.quality) == ("rgb8", HEIGHT, WIDTH, 2)
        decoded, _ = conv.compressed_to_pixels("jpeg", data.tobytes())
        assert bytes(latent.payload) == codec.encode(decoded, 2)
    logs = capfd.readouterr().err
    assert logs.count("'yuv422' is not supported") == 1  # once per encoding, not per frame
    assert "quality 1 → 0" in logs


def test_encoder_with_two_workers_publishes_every_frame_in_order(ros_context, codec, groups):
    encoder = _encoder(ros_context, "cam0", codec=codec, quality=1, workers=2, threads=1)
    probe = Probe(ros_context)
    image_in = probe.publisher(Image, "/cam0/image")
    probe.record(CompressedLatent, "/cam0/latent")
    images = [group[view] for group in groups for view in range(3)]
    with spinning(ros_context, [encoder, probe.node]):
        wait_until(_connected(image_in), what="subscription")
        wait_until(_connected(encoder.publisher), what="probe subscription")
        for index, image in enumerate(images):  # each frame is taken before the next comes
            image_in.publish(_image_msg(image, "rgb8", probe.stamp()))
            wait_until(lambda: encoder.stats.counter("frames_in") == index + 1
                       and encoder.worker.waiting == 0, what="the frame taken by a worker")
        wait_until(lambda: len(probe.got("/cam0/latent")) == len(images), what="every latent")
    latents = probe.got("/cam0/latent")
    assert [m.frame_index for m in latents] == list(range(len(images)))
    assert [bytes(m.payload) for m in latents] == [codec.encode(image, 1) for image in images]
    assert encoder.stats.counter("frames_dropped_busy") == 0


def test_bad_parameters_fail_at_start_with_the_parameter_named(ros_context, codec, capfd):
    with pytest.raises(NodeSetupError, match="quality must be an integer in 0..3"):
        _encoder(ros_context, "cam0", codec=codec, quality=7)
    with pytest.raises(NodeSetupError, match="unknown QoS profile 'fast'"):
        _encoder(ros_context, "cam0", codec=codec, input_qos="fast")
    with pytest.raises(NodeSetupError, match="no inputs"):
        DecoderNode(context=ros_context, codec=codec)
    _encoder(ros_context, "cam0", codec=codec, qualty=2).destroy_node()  # a typo is not silently lost
    assert "ignoring parameter(s) this node does not have: qualty" in capfd.readouterr().err
    streams = resolve_streams([], ["/robot/left", "/robot/right/"], [])
    assert [(s.camera, s.input_topic, s.output_topic) for s in streams] == [
        ("left", "/robot/left/latent", "/robot/left/image_reconstructed"),
        ("right", "/robot/right/latent", "/robot/right/image_reconstructed")]
    streams = resolve_streams(["/a/latent", "b_latent"], [], ["/out/a", "/out/b"])
    assert [(s.camera, s.output_topic) for s in streams] == [("a", "/out/a"), ("b_latent", "/out/b")]


def test_camera_replay_publishes_each_group_with_one_stamp(ros_context, tmp_path):
    import cv2

    from parahydra_ros.ros.camera_replay_node import CameraReplayNode

    rng = np.random.default_rng(1)
    files = {}
    for group in ("g0", "g1"):
        (tmp_path / group / "extra").mkdir(parents=True)
        for view in ("a", "b", "c"):
            files[group, view] = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / group / f"{view}.png"), files[group, view][:, :, ::-1])
    (tmp_path / "g2_short").mkdir()  # too few views: skipped
    cv2.imwrite(str(tmp_path / "g2_short" / "a.png"), files["g0", "a"])
    folder = CameraReplayNode(context=ros_context, parameter_overrides=[
        Parameter("source", value=str(tmp_path)), Parameter("rate", value=20.0),
        Parameter("encoding", value="bgr8"), Parameter("cameras", value=list(CAMERAS))])
    synthetic = CameraReplayNode("synthetic_replay", context=ros_context, namespace="/synth", parameter_overrides=[
        Parameter("cameras", value=["left", "right"]), Parameter("rate", value=10.0), Parameter("count", value=2),
        Parameter("width", value=WIDTH), Parameter("height", value=HEIGHT)])
    probe = Probe(ros_context)
    for c in CAMERAS:
        probe.record(Image, f"/{c}/image")
    for c in ("left", "right"):
        probe.record(Image, f"/synth/{c}/image")
    got = lambda c: probe.got(f"/{c}/image")  # noqa: E731
    with spinning(ros_context, [folder, synthetic, probe.node]):
        wait_until(lambda: all(len(got(c)) >= 3 for c in CAMERAS), what="3 groups of 3 views")
        wait_until(lambda: all(len(probe.got(f"/synth/{c}/image")) == 2 for c in ("left", "right")),
                   what="2 synthetic groups")
        (result,) = folder.set_parameters([Parameter("muted_cameras", value=["cam1"])])
        assert result.successful
        muted_at = len(got("cam1"))
        target = len(got("cam0")) + 3
        wait_until(lambda: len(got("cam0")) >= target, what="3 more groups")
        assert len(got("cam1")) <= muted_at + 1  # at most one tick was running when muting
        time.sleep(0.3)
        assert synthetic.groups_published == 2  # count reached: stopped
    for k in range(3):
        msgs = [got(c)[k] for c in CAMERAS]
        assert len({(m.header.stamp.sec, m.header.stamp.nanosec) for m in msgs}) == 1
        group = ("g0", "g1")[k % 2]
        for c, view, msg in zip(CAMERAS, "abc", msgs):
            assert msg.header.frame_id == f"{c}_optical" and msg.encoding == "bgr8"
            assert np.array_equal(conv.msg_to_pixels(msg), files[group, view])
    left, right = (probe.got(f"/synth/{c}/image") for c in ("left", "right"))
    assert [m.header.stamp for m in left] == [m.header.stamp for m in right]
    assert (left[0].height, left[0].width, left[0].encoding) == (HEIGHT, WIDTH, "rgb8")
    assert not np.array_equal(conv.msg_to_pixels(left[0]), conv.msg_to_pixels(right[0]))  # two viewpoints


def test_packaged_default_model_reconstructs_above_a_psnr_floor(ros_context, groups):
    """Nodes with no `model` parameter load the packaged model; a trained model must reconstruct well."""
    from parahydra_ros.codec.checkpoint import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no packaged default model at {DEFAULT_MODEL}")
    cameras = CAMERAS[:2]
    encoders = [_encoder(ros_context, c) for c in cameras]
    decoder = _decoder(ros_context, cameras=[f"/{c}" for c in cameras])
    probe = Probe(ros_context)
    inputs = [probe.publisher(Image, f"/{c}/image") for c in cameras]
    for c in cameras:
        probe.record(Image, f"/{c}/image_reconstructed")
    with spinning(ros_context, [*encoders, decoder, probe.node]):
        for publisher in inputs:
            wait_until(_connected(publisher), what="encoder subscriptions")
        for encoder in encoders:
            wait_until(_connected(encoder.publisher), what="decoder on latent")
        stamp = probe.stamp()
        for i, publisher in enumerate(inputs):
            publisher.publish(_image_msg(groups[0][i], "rgb8", stamp))
        wait_until(lambda: all(probe.got(f"/{c}/image_reconstructed") for c in cameras), what="reconstructions")
        assert decoder.codec.identity.hash == encoders[0].codec.identity.hash
        for i, c in enumerate(cameras):
            image = probe.got(f"/{c}/image_reconstructed")[0]
            assert _psnr(conv.msg_to_pixels(image), groups[0][i]) > PSNR_FLOOR_DB


# -- issue 14: node parameters and bounds ------------------------------------------------------
def test_quality_range_refusals_and_muted_cameras_cleared_with_an_empty_list(ros_context, codec):
    from parahydra_ros.ros.camera_replay_node import CameraReplayNode

    encoder = _encoder(ros_context, "cam0", codec=codec)
    replay = CameraReplayNode("issue14_replay", context=ros_context, namespace="/i14", parameter_overrides=[
        Parameter("cameras", value=["a", "b"]), Parameter("rate", value=1.0),
        Parameter("muted_cameras", value=["b"])])
    try:
        (quality_range,) = encoder.describe_parameter("quality").integer_range  # `ros2 param describe` shows it
        assert (quality_range.from_value, quality_range.to_value) == (0, codec.num_qualities - 1)
        (result,) = encoder.set_parameters([Parameter("quality", value=codec.num_qualities)])
        assert not result.successful and encoder.quality == 3
        encoder._refuse("", conv.UnsupportedEncoding(""))
        assert encoder.stats.snapshot()["refused_encodings"] == '""'  # not a lone comma
        encoder._refuse("16UC1", conv.UnsupportedEncoding("16UC1"))
        assert encoder.stats.snapshot()["refused_encodings"] == '"",16UC1'
        assert replay.muted == {"b"}
        # `ros2 param set /i14/issue14_replay muted_cameras "[]"` sends an empty byte array
        (result,) = replay.set_parameters([Parameter("muted_cameras", Parameter.Type.BYTE_ARRAY, [])])
        assert result.successful, result.reason
        assert replay.muted == set()
        (result,) = replay.set_parameters([Parameter("muted_cameras", value=["a"])])
        assert result.successful and replay.muted == {"a"}
        (result,) = replay.set_parameters([Parameter("muted_cameras", value=3)])
        assert not result.successful and "list of strings" in result.reason and replay.muted == {"a"}
    finally:
        encoder.destroy_node()
        replay.destroy_node()


def test_decoder_drops_views_above_max_pixels_and_logs_a_camera_changing_size(ros_context, codec, groups, capfd):
    from rclpy.time import Time

    from parahydra_ros.sync import Group

    assert DecoderNode.__module__  # the parameter is declared with a 4096x4096 default
    from parahydra_ros.pipeline.parameters import DECODER
    assert DECODER["max_pixels"].default == 4096 * 4096
    decoder = _decoder(ros_context, codec=codec, max_pixels=HEIGHT * WIDTH, cameras=["/cam0"])
    try:
        def decode(pixels, k):
            msg = _latent_msg(codec, codec.encode(pixels, 0), "cam0", Time(seconds=k).to_msg())
            decoder._decode(Group((k,), (msg,)))

        decode(groups[0][0], 1)  # 120x180: at the limit, decoded
        small = np.ascontiguousarray(groups[1][0][: HEIGHT // 2, : WIDTH // 2])
        decode(small, 2)  # a change of declared size: logged, then decoded
        big = np.concatenate([groups[2][0], groups[2][0]], axis=0)  # 240x180 > max_pixels: dropped
        decode(big, 3)
        stats = decoder.stats.snapshot()
        assert stats["frames_out"] == 2 and stats["views_error_TooLarge"] == 1 and stats["size_changes_cam0"] == 1
        err = capfd.readouterr().err
        assert "camera cam0 (/cam0/latent) changed size from 180x120 to 90x60" in err
        assert re.search(r"TooLarge: declares 180x240 = 43,200 pixels, more than max_pixels \(21,600\)", err)
    finally:
        decoder.destroy_node()

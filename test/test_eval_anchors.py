"""Each classical anchor really runs its codec on a photograph and gives sane numbers.

Fast encoder settings keep the run short; the benchmark defaults are slower.
An anchor whose tool is missing is skipped with its reason (the project's set-up
installs them: scripts/setup_eval_tools.sh).
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import astronaut

from parahydra_ros.eval.anchors import ANCHORS, Anchor, AomencAnchor, VvencAnchor, X265Anchor
from parahydra_ros.codec.metrics import bpp, psnr
from parahydra_ros.eval.rd import anchor_rd_points, bpp_at_psnr
from parahydra_ros.eval.yuv import YuvFormat, rgb_to_yuv, yuv_to_rgb

torch.set_num_threads(1)

MIDDLEBURY_ART = Path(__file__).resolve().parents[2] / "shared/data/middlebury2005_06/Art/view1.png"
FAST = {"hevc": X265Anchor(preset="ultrafast"), "av1": AomencAnchor(cpu_used=6), "vvc": VvencAnchor(preset="faster")}


def photo(name: str) -> np.ndarray:
    """A 256x256 crop of a real photograph (odd sizes are tested separately)."""
    if name == "astronaut":
        return np.ascontiguousarray(astronaut()[20:276, 120:376])
    if not MIDDLEBURY_ART.exists():
        pytest.skip(f"{MIDDLEBURY_ART} is not here")
    from PIL import Image

    return np.asarray(Image.open(MIDDLEBURY_ART).convert("RGB"))[60:316, 100:356].copy()


def fast(name: str) -> Anchor:
    anchor = FAST.get(name, ANCHORS[name])
    availability = anchor.available()
    if not availability:
        pytest.skip(f"{name}: {availability.reason}")
    return anchor


@pytest.mark.parametrize("image_name", ["astronaut", "middlebury-art"])
@pytest.mark.parametrize("name", list(ANCHORS))
def test_anchor_codes_a_photograph_sanely(name, image_name):
    anchor, image = fast(name), photo(image_name)
    low_quality, high_quality = anchor.qualities[1], anchor.qualities[-2]
    low, high = anchor.encode_decode(image, low_quality), anchor.encode_decode(image, high_quality)
    for coded in (low, high):
        assert coded.decoded.shape == image.shape and coded.decoded.dtype == np.uint8
        assert 0.05 < bpp(coded.num_bytes, *image.shape[:2]) < 8.0
    assert high.num_bytes > low.num_bytes
    assert psnr(image, high.decoded) > max(psnr(image, low.decoded), 25.0)


@pytest.mark.parametrize("name", ["hevc", "av1", "vvc"])
def test_video_anchors_handle_odd_sizes(name):
    image = np.ascontiguousarray(astronaut()[:101, :139])
    coded = fast(name).encode_decode(image, fast(name).qualities[-1])
    assert coded.decoded.shape == image.shape
    assert psnr(image, coded.decoded) > 30.0


def test_anchor_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        ANCHORS["jpeg"].encode_decode(np.zeros((8, 8), np.uint8), 50)


@pytest.mark.parametrize("fmt", [YuvFormat(8, "444"), YuvFormat(10, "444"), YuvFormat(10, "420")])
def test_yuv_round_trip(fmt):
    image = np.ascontiguousarray(astronaut()[:63, :65])
    frame = rgb_to_yuv(image, fmt)
    assert frame.planes[0].dtype == fmt.dtype and max(p.max() for p in frame.planes) < 2**fmt.bit_depth
    back = yuv_to_rgb(frame)[:63, :65]
    assert psnr(image, back) > (40.0 if fmt.chroma == "420" else 50.0)


def test_rd_points_and_jpeg_rate_at_equal_psnr():
    images = [photo("astronaut"), np.ascontiguousarray(astronaut()[300:400, 300:460])]
    points = anchor_rd_points(images, ANCHORS["jpeg"], qualities=[20, 50, 80])
    assert [p.quality for p in points] == [20, 50, 80]
    assert all(a.bpp < b.bpp and a.psnr < b.psnr and a.ms_ssim < b.ms_ssim for a, b in zip(points, points[1:]))
    pixels = sum(i.shape[0] * i.shape[1] for i in images)
    num_bytes = sum(ANCHORS["jpeg"].encode_decode(i, 50).num_bytes for i in images)
    assert points[1].bpp == pytest.approx(8 * num_bytes / pixels)
    middle = bpp_at_psnr(points, (points[0].psnr + points[1].psnr) / 2)
    assert points[0].bpp < middle < points[1].bpp


def test_anchor_cache_returns_the_same_points_without_coding_again(tmp_path, monkeypatch):
    images = [np.ascontiguousarray(astronaut()[:48, :64]), np.ascontiguousarray(astronaut()[100:148, 50:114])]
    jpeg = ANCHORS["jpeg"]
    first = anchor_rd_points(images, jpeg, qualities=[30, 70], cache=tmp_path)
    assert len(list(tmp_path.iterdir())) == 4  # one file per image and setting

    def refuse(*args, **kwargs):
        raise AssertionError("coded again despite the cache")

    monkeypatch.setattr(type(jpeg), "encode_decode", refuse)
    assert anchor_rd_points(images, jpeg, qualities=[30, 70], cache=tmp_path) == first
    with pytest.raises(AssertionError, match="coded again"):  # another image is not in the cache
        anchor_rd_points([np.ascontiguousarray(astronaut()[200:248, :64])], jpeg, qualities=[30], cache=tmp_path)

"""Metrics, Bjøntegaard deltas and RD interpolation against values known in closed form."""
import math

import numpy as np
import pytest
import torch
from skimage.data import astronaut

from parahydra_ros.eval.bjontegaard import bd_psnr, bd_rate
from parahydra_ros.codec.metrics import (
    _ms_ssim_few_scales,
    bpp,
    ms_ssim,
    ms_ssim_db,
    ms_ssim_levels,
    ms_ssim_tensor,
    psnr,
    psnr_tensor,
)
from parahydra_ros.eval.rd import RDPoint, bpp_at_psnr

torch.set_num_threads(1)

RATES = np.array([0.12, 0.25, 0.5, 1.0, 2.0])
PSNRS = np.array([28.0, 31.0, 34.0, 36.5, 39.0])


def noisy(image: np.ndarray, amplitude: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-amplitude, amplitude + 1, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def test_psnr_of_a_known_error():
    image = np.full((32, 48, 3), 100, np.uint8)
    signs = np.where(np.random.default_rng(1).random(image.shape) < 0.5, -7, 7)
    expected = 20 * math.log10(255) - 10 * math.log10(49)
    assert psnr(image, (image + signs).astype(np.uint8)) == pytest.approx(expected, abs=1e-9)
    assert psnr(image[..., 0], (image + signs).astype(np.uint8)[..., 0]) == pytest.approx(expected, abs=1e-9)


def test_psnr_of_identical_images_is_inf():
    image = astronaut()
    assert psnr(image, image) == math.inf
    assert torch.isinf(psnr_tensor(torch.ones(1, 3, 8, 8), torch.ones(1, 3, 8, 8))).all()


def test_psnr_rejects_bad_input():
    with pytest.raises(TypeError):
        psnr(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))


def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise():
    image = astronaut()[:200, :256]
    assert ms_ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    values = [ms_ssim(image, noisy(image, amplitude)) for amplitude in (4, 16, 48)]
    assert 1.0 > values[0] > values[1] > values[2] > 0.0
    assert ms_ssim_db(values[0]) > ms_ssim_db(values[1]) > 0.0
    assert ms_ssim_db(1.0) == math.inf


def test_ms_ssim_on_small_images_uses_fewer_scales():
    assert [ms_ssim_levels(side) for side in (11, 21, 41, 81, 160, 161)] == [1, 2, 3, 4, 4, 5]
    with pytest.raises(ValueError):
        ms_ssim_levels(10)
    small = astronaut()[100:164, 200:264]
    assert 0.0 < ms_ssim(small, noisy(small, 16)) < 1.0
    assert ms_ssim(small[..., 1], small[..., 1]) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_fallback_matches_the_library_at_five_scales():
    image = astronaut()[:192, :192]
    x = torch.from_numpy(image.transpose(2, 0, 1)).float()[None]
    y = torch.from_numpy(noisy(image, 20).transpose(2, 0, 1)).float()[None]
    library = ms_ssim_tensor(x, y, data_range=255.0)
    # the library's weights add up to 1.0001; the fallback renormalises them
    assert float(_ms_ssim_few_scales(x, y, 255.0, levels=5)) == pytest.approx(float(library), rel=1e-4)
    assert float(ms_ssim_tensor(x / 255, y / 255)) == pytest.approx(float(library), rel=1e-5)


def test_bpp():
    assert bpp(1000, 100, 80) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_bd_rate_of_a_known_rate_factor(method):
    assert bd_rate(RATES, PSNRS, RATES * 0.9, PSNRS, method=method) == pytest.approx(-10.0, abs=0.1)
    assert bd_rate(RATES, PSNRS, RATES * 1.2, PSNRS, method=method) == pytest.approx(20.0, abs=0.1)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_bd_psnr_of_a_known_shift(method):
    assert bd_psnr(RATES, PSNRS, RATES, PSNRS + 0.5, method=method) == pytest.approx(0.5, abs=1e-9)
    shuffled = [3, 0, 4, 1, 2]
    assert bd_psnr(RATES[shuffled], PSNRS[shuffled], RATES, PSNRS - 1.0, method=method) == pytest.approx(-1.0)


def test_bjontegaard_errors():
    with pytest.raises(ValueError, match="at least 4 points"):
        bd_rate(RATES[:3], PSNRS[:3], RATES[:3], PSNRS[:3], method="cubic")
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATES, PSNRS, RATES, PSNRS + 20.0)
    with pytest.raises(ValueError, match="rise strictly"):
        bd_psnr(RATES, PSNRS[[0, 2, 1, 3, 4]], RATES, PSNRS)
    with pytest.raises(ValueError, match="unknown interpolation"):
        bd_rate(RATES, PSNRS, RATES, PSNRS, method="linear")  # type: ignore[arg-type]


def test_bpp_at_psnr_interpolates_monotonically_in_log_rate():
    points = [RDPoint(q, r, p, 0.9) for q, (r, p) in enumerate(zip(RATES, PSNRS))]
    dominated = RDPoint(99, 1.5, 30.0, 0.9)
    assert bpp_at_psnr(points + [dominated], 34.0) == pytest.approx(0.5)
    assert bpp_at_psnr(points, 32.5) == pytest.approx(math.sqrt(0.25 * 0.5), rel=0.05)
    targets = np.linspace(28.0, 39.0, 23)
    rates = [bpp_at_psnr(points, t) for t in targets]
    assert np.all(np.diff(rates) > 0)
    with pytest.raises(ValueError, match="outside"):
        bpp_at_psnr(points, 40.0)

"""Bjøntegaard deltas: average rate and quality differences between two RD curves.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves",
VCEG-M33 (2001), and C. Herglotz et al., "The Bjøntegaard Bible: why your way of
comparing video codecs may be wrong", IEEE TIP 33 (2024). Both deltas integrate
interpolated curves over the quality (or log-rate) interval the two curves share
and divide by its length:

* ``"cubic"``: VCEG-M33, one polynomial of degree 3 fitted through all points
  (needs at least 4 points per curve);
* ``"pchip"``: piecewise cubic Hermite interpolation (Fritsch-Carlson, as
  ``scipy.interpolate.PchipInterpolator``), the JVET common-test-conditions
  method the tutorial recommends (at least 2 points per curve).

Points may come in any order: each curve is sorted by rate. The quality must then
rise strictly with rate (drop dominated points first), because a curve that
folds back has no single rate for a quality.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from numpy.polynomial import Polynomial
from scipy.interpolate import PchipInterpolator

Method = Literal["cubic", "pchip"]

_MIN_POINTS = {"cubic": 4, "pchip": 2}


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    method: Method = "pchip",
) -> float:
    """Average rate difference of the test curve against the anchor at equal quality, in %.

    Negative means the test codec needs fewer bits. ``quality`` is PSNR in dB
    (or any quality in dB, e.g. MS-SSIM dB); rates are positive (bpp, bytes...).
    """
    anchor = _curve(rate_anchor, quality_anchor, method, "anchor")
    test = _curve(rate_test, quality_test, method, "test")
    log_rate_as_function_of_quality = (anchor[1], anchor[0]), (test[1], test[0])
    mean_log_ratio = _mean_difference(*log_rate_as_function_of_quality, method)
    return float((np.exp(mean_log_ratio) - 1.0) * 100.0)


def bd_psnr(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    method: Method = "pchip",
) -> float:
    """Average quality difference of the test curve against the anchor at equal rate (dB)."""
    anchor = _curve(rate_anchor, quality_anchor, method, "anchor")
    test = _curve(rate_test, quality_test, method, "test")
    return _mean_difference(anchor, test, method)


def _curve(
    rate: Sequence[float], quality: Sequence[float], method: Method, label: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(log rate, quality)`` arrays sorted by rate."""
    if method not in _MIN_POINTS:
        raise ValueError(f"unknown interpolation {method!r}; use 'cubic' or 'pchip'")
    rate_array, quality_array = np.asarray(rate, dtype=float), np.asarray(quality, dtype=float)
    if rate_array.ndim != 1 or rate_array.shape != quality_array.shape:
        raise ValueError(f"{label} curve: rate and quality must be 1-D of one length")
    if len(rate_array) < _MIN_POINTS[method]:
        raise ValueError(f"{label} curve: {method} needs at least {_MIN_POINTS[method]} points, got {len(rate_array)}")
    if not np.all(np.isfinite(quality_array)) or not np.all(rate_array > 0):
        raise ValueError(f"{label} curve: rates must be positive and qualities finite")
    order = np.argsort(rate_array)
    log_rate, quality_sorted = np.log(rate_array[order]), quality_array[order]
    if np.any(np.diff(log_rate) <= 0) or np.any(np.diff(quality_sorted) <= 0):
        raise ValueError(
            f"{label} curve: quality must rise strictly with rate, got rate {rate_array[order].tolist()} "
            f"and quality {quality_sorted.tolist()}"
        )
    return log_rate, quality_sorted


def _mean_difference(
    anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], method: Method
) -> float:
    """Mean of ``y_test(x) - y_anchor(x)`` over the shared ``x`` interval of two ``(x, y)`` curves."""
    low, high = max(anchor[0][0], test[0][0]), min(anchor[0][-1], test[0][-1])
    if low >= high:
        raise ValueError(
            f"the curves do not overlap: anchor spans [{anchor[0][0]:.4g}, {anchor[0][-1]:.4g}], "
            f"test spans [{test[0][0]:.4g}, {test[0][-1]:.4g}]"
        )
    return (_integral(*test, low, high, method) - _integral(*anchor, low, high, method)) / (high - low)


def _integral(x: np.ndarray, y: np.ndarray, low: float, high: float, method: Method) -> float:
    if method == "cubic":
        antiderivative = Polynomial.fit(x, y, 3).integ()
        return float(antiderivative(high) - antiderivative(low))
    return float(PchipInterpolator(x, y).integrate(low, high))

"""Image-quality and rate metrics: PSNR, MS-SSIM (linear and dB) and bits per pixel.

The ``uint8`` functions are what evaluation reports: they take decoded 8-bit
images (``HxW`` or ``HxWxC``), so every codec is measured on exactly the pixels
a user would get. The ``*_tensor`` functions take float ``NxCxHxW`` tensors
(range ``[0, data_range]``) for training losses and logging; both paths share
one implementation.

MS-SSIM is Wang, Simoncelli & Bovik (2003) as implemented by ``pytorch_msssim``
(Gaussian window 11, sigma 1.5, the paper's five scale weights), averaged over
colour channels. The five-scale version needs the shorter image side to exceed
``(11 - 1) * 2**4 = 160`` pixels. Smaller images use as many scales ``L`` as fit
(shorter side ``> 10 * 2**(L-1)``) and the first ``L`` weights renormalised to
sum to one; images with a side of 10 pixels or less raise ``ValueError``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _library_ms_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN_SIZE = 11
_WIN_SIGMA = 1.5


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two ``uint8`` images of equal shape (``inf`` if identical)."""
    _check_uint8_pair(a, b)
    return float(psnr_tensor(_to_nchw(a).double(), _to_nchw(b).double(), data_range=255.0)[0])


def psnr_tensor(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each image in a batch ``NxCxHxW`` (``inf`` where identical)."""
    mse = ((x - y) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two ``uint8`` images of equal shape, in ``[0, 1]``."""
    _check_uint8_pair(a, b)
    return float(ms_ssim_tensor(_to_nchw(a), _to_nchw(b), data_range=255.0)[0])


def ms_ssim_tensor(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM of each image in a batch ``NxCxHxW``, with fewer scales for small images."""
    levels = ms_ssim_levels(min(x.shape[-2:]))
    if levels == len(MS_SSIM_WEIGHTS):
        return _library_ms_ssim(x, y, data_range=data_range, size_average=False)
    return _ms_ssim_few_scales(x, y, data_range, levels)


def ms_ssim_levels(shorter_side: int) -> int:
    """Number of MS-SSIM scales (1 to 5) that an image with this shorter side supports."""
    if shorter_side <= _WIN_SIZE - 1:
        raise ValueError(
            f"MS-SSIM needs images larger than {_WIN_SIZE - 1} px on each side, got {shorter_side} px"
        )
    levels = 1
    while levels < len(MS_SSIM_WEIGHTS) and shorter_side > (_WIN_SIZE - 1) * 2**levels:
        levels += 1
    return levels


def ms_ssim_db(value: float) -> float:
    """MS-SSIM expressed in dB, ``-10 log10(1 - value)`` (``inf`` for 1)."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of ``num_bytes`` for an image of ``height x width`` pixels."""
    return 8.0 * num_bytes / (height * width)


def _ms_ssim_few_scales(x: torch.Tensor, y: torch.Tensor, data_range: float, levels: int) -> torch.Tensor:
    """The ``pytorch_msssim.ms_ssim`` recursion over ``levels`` scales, weights renormalised.

    Equal to the library's result for ``levels == 5`` (the tests check it); the
    library itself refuses images with a shorter side of 160 px or less.
    """
    weights = x.new_tensor(MS_SSIM_WEIGHTS[:levels])
    weights = weights / weights.sum()
    win = _fspecial_gauss_1d(_WIN_SIZE, _WIN_SIGMA).repeat([x.shape[1], 1, 1, 1]).to(x)
    factors = []
    for level in range(levels):
        ssim_per_channel, cs = _ssim(x, y, data_range=data_range, win=win, size_average=False)
        if level < levels - 1:
            factors.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=padding)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(torch.relu(ssim_per_channel))
    per_channel = torch.prod(torch.stack(factors) ** weights.view(-1, 1, 1), dim=0)
    return per_channel.mean(dim=1)


def _to_nchw(image: np.ndarray) -> torch.Tensor:
    channels_last = image if image.ndim == 3 else image[..., None]
    return torch.from_numpy(np.ascontiguousarray(channels_last.transpose(2, 0, 1))).float()[None]


def _check_uint8_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ValueError(f"expected two HxW or HxWxC images of one shape, got {a.shape} and {b.shape}")

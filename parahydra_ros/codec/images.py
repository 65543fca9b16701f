"""The one conversion between uint8 images and the model's padded float tensors, and the one
image-file reader (``read_image``: ``parahydra encode``, ``parahydra eval``, the training
folders, the camera replay node and the demo all read files with it, so a grey file is coded
as mono everywhere)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.configs import PAD_MULTIPLE
from .image_conversions import as_rgb


def padding_for(height: int, width: int) -> tuple[int, int]:
    """Rows and columns to add (bottom, right) to reach multiples of 64."""
    return (-height) % PAD_MULTIPLE, (-width) % PAD_MULTIPLE


def image_to_tensor(image: np.ndarray) -> Tensor:
    """uint8 H×W×3 RGB (or H×W mono, replicated to 3 channels) → 1×3×Hp×Wp in [0, 1].

    Padding replicates the last row/column (cheaper to code than a black border)
    and is cropped away after decoding.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {image.dtype}")
    image = as_rgb(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB or H×W mono image, got shape {image.shape}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError("empty image")
    x = torch.from_numpy(np.require(image, requirements=("C", "W"))).permute(2, 0, 1)[None].float().div_(255)
    pad_bottom, pad_right = padding_for(height, width)
    if pad_bottom or pad_right:
        x = F.pad(x, (0, pad_right, 0, pad_bottom), mode="replicate")
    return x


def tensor_to_image(x: Tensor, height: int, width: int, mono: bool = False) -> np.ndarray:
    """3×Hp×Wp in [0, 1] → uint8 H×W×3 (or H×W when ``mono``), padding cropped."""
    pixels = x[:, :height, :width].clamp(0, 1).mul(255).round().to(torch.uint8)
    if mono:
        return pixels.float().mean(0).round().to(torch.uint8).numpy()
    return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())


def read_image(path: str | Path) -> np.ndarray:
    """An 8-bit image file as the codec takes it: uint8 RGB (H×W×3, alpha dropped) or mono (H×W).

    Raises ``ValueError`` naming the file when it is not a readable 8-bit image.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
        raise ValueError(f"{path}: not a readable 8-bit image")
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)

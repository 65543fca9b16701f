"""Tiny models and natural test images shared by the codec tests."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from skimage import data

from parahydra_ros.codec.checkpoint import save_checkpoint
from parahydra_ros.loss import RateDistortionLoss
from parahydra_ros.model.configs import get_config
from parahydra_ros.model.parahydra import ParaHydra


def photo(height: int = 128, width: int = 192, shift: int = 0) -> np.ndarray:
    """A crop of a real photograph (scikit-image's astronaut), optionally shifted right."""
    image = data.astronaut()
    return np.ascontiguousarray(image[100 : 100 + height, 150 - shift : 150 - shift + width])


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    return data.astronaut(), data.chelsea(), data.coffee(), data.rocket()


def _training_crops(rng: np.random.Generator, count: int, size: int = 64) -> torch.Tensor:
    """Random crops of scikit-image's bundled photographs (never the evaluation data)."""
    photos = _photos()
    crops = []
    for _ in range(count):
        image = photos[rng.integers(len(photos))]
        top = rng.integers(image.shape[0] - size)
        left = rng.integers(image.shape[1] - size)
        crops.append(image[top : top + size, left : left + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255)


def trained_tiny_model(seed: int = 0, steps: int = 150, **switches) -> ParaHydra:
    """A tiny model trained briefly on natural crops, so its predicted scales fit real
    content and spread over the scale table. An untrained model codes everything with
    a few indexes (a determinism test would pass by luck) and its likelihoods do not
    describe the data (bits-vs-estimate would compare noise)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ParaHydra(get_config("tiny", **switches))
    criterion = RateDistortionLoss(model.cfg.lambdas)
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main, lr=1e-3), torch.optim.Adam(aux, lr=1e-2)
    for _ in range(steps):
        x = _training_crops(rng, 8)[:, None]
        quality = torch.from_numpy(rng.integers(model.cfg.num_qualities, size=8))
        optimizer.zero_grad()
        criterion(model(x, quality), x, quality)["loss"].backward()
        optimizer.step()
        aux_optimizer.zero_grad()
        model.aux_loss().backward()
        aux_optimizer.step()
    return model.eval()


def tiny_checkpoint(path: Path, seed: int = 0, name: str = "tiny-test", steps: int = 150,
                    **switches) -> Path:
    """Write a tiny checkpoint to ``path``; trained once per test session and argument set."""
    key = (seed, name, steps, tuple(sorted(switches.items())))
    if key not in _TRAINED:
        _TRAINED[key] = trained_tiny_model(seed, steps, **switches)
    save_checkpoint(path, _TRAINED[key], name)
    return path


_TRAINED: dict[tuple, ParaHydra] = {}

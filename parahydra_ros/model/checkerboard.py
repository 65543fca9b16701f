"""Checkerboard helpers: anchor / non-anchor masks, squeeze and unsqueeze.

Convention (model-spec §0, the same in LDMIC and MLIC++ ``utils/ckbd.py``)::

    col:  0 1 2 3            anchor     = (row + col) odd   -> coded first
    row 0 . A . A            non-anchor = (row + col) even  -> coded second,
    row 1 A . A .                         with the anchors as spatial context
    row 2 . A . A
    row 3 A . A .

"Squeezing" packs the anchor (or non-anchor) positions of every row into a
``w/2``-wide tensor, so a part of a ``c×h×w`` slice becomes ``c×h×(w/2)``; its
C-order raster is the symbol order inside the bitstream (model-spec §5).
``h`` and ``w`` must be even.

Everything here is pure reshaping/stacking (no in-place writes), so it works for
any dtype, under autograd and under ``torch.inference_mode``.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check_even(x: Tensor) -> None:
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"checkerboard coding needs an even latent size, got {h}×{w}")


def _blocks(x: Tensor) -> Tensor:
    """``B×C×h×w`` → ``B×C×(h/2)×2×(w/2)×2`` (row parity, column parity)."""
    _check_even(x)
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2)


def squeeze_anchor(x: Tensor) -> Tensor:
    """Anchor positions of ``x`` (``B×C×h×w``) packed into ``B×C×h×(w/2)``."""
    t = _blocks(x)
    b, c, h, w = x.shape
    # even rows: odd columns; odd rows: even columns.
    return torch.stack((t[:, :, :, 0, :, 1], t[:, :, :, 1, :, 0]), dim=3).reshape(b, c, h, w // 2)


def squeeze_nonanchor(x: Tensor) -> Tensor:
    """Non-anchor positions of ``x`` (``B×C×h×w``) packed into ``B×C×h×(w/2)``."""
    t = _blocks(x)
    b, c, h, w = x.shape
    # even rows: even columns; odd rows: odd columns.
    return torch.stack((t[:, :, :, 0, :, 0], t[:, :, :, 1, :, 1]), dim=3).reshape(b, c, h, w // 2)


def merge(anchor: Tensor, nonanchor: Tensor) -> Tensor:
    """Inverse of the two squeezes: ``B×C×h×(w/2)`` anchor and non-anchor parts → ``B×C×h×w``."""
    if anchor.shape != nonanchor.shape:
        raise ValueError(f"part shapes differ: {tuple(anchor.shape)} vs {tuple(nonanchor.shape)}")
    b, c, h, w2 = anchor.shape
    if h % 2:
        raise ValueError(f"checkerboard coding needs an even latent height, got {h}")
    a = anchor.reshape(b, c, h // 2, 2, w2)
    n = nonanchor.reshape(b, c, h // 2, 2, w2)
    even_rows = torch.stack((n[:, :, :, 0], a[:, :, :, 0]), dim=-1)  # columns: non-anchor, anchor
    odd_rows = torch.stack((a[:, :, :, 1], n[:, :, :, 1]), dim=-1)  # columns: anchor, non-anchor
    return torch.stack((even_rows, odd_rows), dim=3).reshape(b, c, h, 2 * w2)


def unsqueeze_anchor(anchor: Tensor) -> Tensor:
    """A squeezed anchor part back on the ``h×w`` grid, zeros at non-anchor positions."""
    return merge(anchor, torch.zeros_like(anchor))


def unsqueeze_nonanchor(nonanchor: Tensor) -> Tensor:
    """A squeezed non-anchor part back on the ``h×w`` grid, zeros at anchor positions."""
    return merge(torch.zeros_like(nonanchor), nonanchor)


def anchor_mask(h: int, w: int, device=None, dtype=torch.float32) -> Tensor:
    """``1×1×h×w`` indicator of the anchor positions ((row + col) odd)."""
    rows = torch.arange(h, device=device)[:, None]
    cols = torch.arange(w, device=device)[None, :]
    return ((rows + cols) % 2 == 1).to(dtype)[None, None]


def ckbd_anchor(x: Tensor) -> Tensor:
    """``x`` with its non-anchor positions set to zero."""
    return x * anchor_mask(*x.shape[-2:], device=x.device, dtype=x.dtype)


def ckbd_nonanchor(x: Tensor) -> Tensor:
    """``x`` with its anchor positions set to zero."""
    return x * (1 - anchor_mask(*x.shape[-2:], device=x.device, dtype=x.dtype))


def nonanchor_flat_index(h: int, w: int, device=None) -> Tensor:
    """Flat (row-major ``h·w``) positions of the non-anchors, in squeezed C-order."""
    grid = torch.arange(h * w, device=device).reshape(1, 1, h, w)
    return squeeze_nonanchor(grid).reshape(-1)

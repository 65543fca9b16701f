"""PMIFM, the Parallax Multi Information Fusion Module (ParaHydra §3.3; model-spec §2).

``X_m' = PMIFM(X_m, {X_s})``::

    for every side s:  (A_s, C_s) = OPAM(X_m, X_s)            one OPAM, shared over sides
    W = softmax over sides of C (per pixel)                    eq. 14
    F = sum_s W_s * A_s                                        eq. 15
    X_m' = X_m + R(concat[F, X_m]),  R = RB(2C->C) -> RB(C->C)  eq. 16 (LDMIC's refine)

No side -> ``X_m`` unchanged. One side -> the weight is exactly 1.

Efficient evaluation (§2.2): the main's query features and every side's key
features are computed once, and the sides are streamed with an online softmax
(running max, ``num = sum e^{C_s - m} A_s``, ``den = sum e^{C_s - m}``), so
memory does not grow with the number of sides. Pairs are batched on the batch
axis up to a working-memory budget (:attr:`PMIFM.pair_budget_bytes`).

Two entry points:

* :meth:`PMIFM.forward` ``(main, sides)`` - one main, a list of sides (Para-EM's PCCM);
* :meth:`PMIFM.fuse_views` ``(x)`` with ``x`` of ``B x V x C x H x W`` - every view fused
  with all the others at once, Jacobi style (Para-JD). The ordered pairs
  ``(i, (i + d) mod V)`` are gathered by index for each offset ``d = 1..V-1``, so
  one step holds every main once and the online softmax stays element-wise.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from compressai.layers import ResidualBlock
from torch import Tensor, nn

from .attention import EfficientAttention
from .configs import ModelConfig
from .opam import OPAM, OPAM_MODES, ParallaxAttention2D

__all__ = ["PMIFM", "PMIFM_ATTENTIONS"]

PMIFM_ATTENTIONS = OPAM_MODES + ("attn2d", "jct")
_FLOAT_BYTES = 4


class _JCTAligner(nn.Module):
    """The ``jct`` ablation (model-spec §7, AMBIGUITY A19): ``A_s = EffAttn(target=X_m, input=X_s)``.

    JCT yields no consistency (``None``), so PMIFM weighs the sides uniformly.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.attention = EfficientAttention(channels)

    def query(self, main: Tensor) -> Tensor:
        return self.attention.query(main)

    def key(self, side: Tensor) -> tuple[Tensor, Tensor]:
        return self.attention.key(side)

    def features(self, x: Tensor):
        return self.query(x), self.key(x)

    def align(self, query: Tensor, key: tuple[Tensor, Tensor], side: Tensor) -> tuple[Tensor, None]:
        return self.attention.attend(query, key), None

    def pair_bytes(self, height: int, width: int) -> int:
        return _FLOAT_BYTES * 4 * self.attention.reprojection.out_channels * height * width


def _map(fn, cache):
    """Apply ``fn`` to every tensor of a cache (a tensor, ``None`` or a tuple of them)."""
    if cache is None:
        return None
    if isinstance(cache, tuple):
        return tuple(_map(fn, c) for c in cache)
    return fn(cache)


def _take(cache, batch: int, views: int, index: Tensor):
    """Gather views ``index`` (a 1-D index into ``V``) from a cache whose axis 0 is ``B*V``.

    The result's axis 0 is ``B * len(index)``, sample-major like the input.
    """
    return _map(lambda t: t.reshape(batch, views, *t.shape[1:])[:, index].flatten(0, 1), cache)


def _repeat(cache, times: int):
    """A cache of ``B`` mains repeated for ``times`` sides stacked on the batch axis."""
    if times == 1:
        return cache
    return _map(lambda t: t.repeat(times, *([1] * (t.dim() - 1))), cache)


class _OnlineSoftmax:
    """Streaming ``sum_s softmax_s(C)_s * A_s`` over sides, per pixel (model-spec §2.2).

    A ``None`` consistency means uniform weights (the mean).
    """

    def __init__(self, keep_consistencies: bool = False):
        self.num: Optional[Tensor] = None
        self.den: Optional[Tensor] = None
        self.max: Optional[Tensor] = None
        self.count = 0
        self.consistencies: Optional[list] = [] if keep_consistencies else None

    def add(self, aligned: Tensor, consistency: Optional[Tensor]) -> None:
        self.count += 1
        if self.consistencies is not None:
            self.consistencies.append(consistency)
        if consistency is None:
            self.num = aligned if self.num is None else self.num + aligned
            return
        if self.num is None:  # exp(C - C) = 1 exactly: one side gives weight 1 and F = A exactly
            self.num, self.den, self.max = aligned, torch.ones_like(consistency), consistency
            return
        new_max = torch.maximum(self.max, consistency)
        old_scale = torch.exp(self.max - new_max)
        scale = torch.exp(consistency - new_max)
        self.num = self.num * old_scale + aligned * scale
        self.den = self.den * old_scale + scale
        self.max = new_max

    def result(self) -> Tensor:
        if self.den is None:
            return self.num / self.count if self.count > 1 else self.num
        return self.num / self.den

    def weights(self, side_axis: int) -> Tensor:
        """The per-pixel weights over sides, stacked on ``side_axis`` (for tests and inspection)."""
        if any(c is None for c in self.consistencies):
            shape = list(self.num.shape)
            shape[-3] = 1
            uniform = self.num.new_full(shape, 1.0 / self.count)
            return torch.stack([uniform] * self.count, dim=side_axis)
        return torch.stack(self.consistencies, dim=side_axis).softmax(dim=side_axis)


class PMIFM(nn.Module):
    """Parallax Multi Information Fusion Module (model-spec §2.1).

    Args:
        channels: width ``C`` of the main and side features.
        cfg: model configuration (SKM widths).
        attention: the aligner: ``"opam"`` (default), ``"hpa_only"``, ``"vpa_only"``
            (OPAM ablations), ``"attn2d"`` (full 2-D parallax attention) or ``"jct"``
            (LDMIC's EfficientAttention; uniform weights).
        vpa_key: OPAM's VPA key, ``"aligned"`` (the spec) or ``"propagated"``
            (cheaper; see :class:`~parahydra_ros.model.opam.OPAM`).
        correlation: add the raw features' cosine to the attention scores
            (:class:`~parahydra_ros.model.opam.ParallaxAttention`; Para-JD's fusions
            when ``cfg.opam_correlation``).

    Attributes:
        pair_budget_bytes: working memory allowed for the pairs evaluated at once
            (one pair alone is always allowed). Pairs are batched up to it and
            streamed beyond it; the result does not depend on it (up to float
            rounding).
    """

    def __init__(self, channels: int, cfg: ModelConfig, attention: str = "opam",
                 vpa_key: Optional[str] = None, correlation: bool = False):
        super().__init__()
        if attention not in PMIFM_ATTENTIONS:
            raise ValueError(f"PMIFM attention {attention!r} not in {PMIFM_ATTENTIONS}")
        self.channels = channels
        self.attention = attention
        if attention == "attn2d":
            self.aligner = ParallaxAttention2D(channels, cfg, correlation=correlation)
        elif attention == "jct":
            self.aligner = _JCTAligner(channels)
        else:
            self.aligner = OPAM(channels, cfg, mode=attention, vpa_key=vpa_key, correlation=correlation)
        self.fusion = nn.Sequential(ResidualBlock(2 * channels, channels),
                                    ResidualBlock(channels, channels))
        self.pair_budget_bytes = 256 << 20

    def _pairs_per_step(self, batch: int, height: int, width: int) -> int:
        per_pair = batch * self.aligner.pair_bytes(height, width)
        return max(1, self.pair_budget_bytes // max(per_pair, 1))

    def _refine(self, main: Tensor, fused: Tensor) -> Tensor:
        return main + self.fusion(torch.cat([fused, main], dim=1))

    def refine_alone(self, main: Tensor) -> Tensor:
        """The refinement of a view without side views, ``main + R([main, main])``
        (``B x C x H x W``): the fused feature is the view itself."""
        return self._refine(main, main)

    def forward(self, main: Tensor, sides: Sequence[Tensor], return_weights: bool = False):
        """Fuse the ``sides`` into ``main`` (all ``B x C x H x W``).

        Returns ``B x C x H x W``; with ``return_weights=True`` also the fusion
        weights ``B x S x 1 x H x W`` (sides in the given order; ``None`` without sides).
        An empty ``sides`` returns ``main`` itself.
        """
        sides = list(sides)
        if not sides:
            return (main, None) if return_weights else main
        batch, _, height, width = main.shape
        group = min(len(sides), self._pairs_per_step(batch, height, width))
        query = self.aligner.query(main)
        state = _OnlineSoftmax(keep_consistencies=return_weights)
        for start in range(0, len(sides), group):
            chunk = sides[start:start + group]
            side = torch.cat(chunk, dim=0) if len(chunk) > 1 else chunk[0]
            aligned, consistency = self.aligner.align(
                _repeat(query, len(chunk)), self.aligner.key(side), side)
            for k in range(len(chunk)):
                part = slice(k * batch, (k + 1) * batch)
                state.add(aligned[part], None if consistency is None else consistency[part])
        out = self._refine(main, state.result())
        return (out, state.weights(side_axis=1)) if return_weights else out

    def fuse_views(self, x: Tensor, return_weights: bool = False):
        """Fuse every view of ``x`` (``B x V x C x H x W``) with all the others.

        View ``i`` is the main and ``{j != i}`` its sides, all from the same input
        (Jacobi style, no sequential dependency). Returns ``B x V x C x H x W``; with
        ``return_weights=True`` also the weights ``B x V x (V-1) x 1 x H x W``, where
        side slot ``d-1`` of view ``i`` holds view ``(i + d) mod V``. ``V = 1``
        returns ``x`` itself.
        """
        batch, views, channels, height, width = x.shape
        if views == 1:
            return (x, None) if return_weights else x
        flat = x.reshape(batch * views, channels, height, width)
        query, key = self.aligner.features(flat)  # once per view
        arange = torch.arange(views, device=x.device)
        per_step = self._pairs_per_step(batch, height, width)
        state = _OnlineSoftmax(keep_consistencies=return_weights)
        offsets = list(range(1, views))
        if per_step >= views:  # several offsets (every main, each with one side) per step
            group = per_step // views
            for start in range(0, len(offsets), group):
                chunk = torch.tensor(offsets[start:start + group], device=x.device)
                mains = arange.repeat(len(chunk)) if len(chunk) > 1 else None
                sides = ((arange[None, :] + chunk[:, None]) % views).flatten()
                aligned, consistency = self._align_gathered(
                    query, key, flat, batch, views, mains, sides)
                aligned = aligned.view(batch, len(chunk), views, channels, height, width)
                if consistency is not None:
                    consistency = consistency.view(batch, len(chunk), views, 1, height, width)
                for k in range(len(chunk)):
                    state.add(aligned[:, k], None if consistency is None else consistency[:, k])
        else:  # one offset at a time, its mains split into chunks
            for d in offsets:
                parts_a, parts_c = [], []
                for start in range(0, views, per_step):
                    mains = arange[start:start + per_step]
                    aligned, consistency = self._align_gathered(
                        query, key, flat, batch, views, mains, (mains + d) % views)
                    parts_a.append(aligned.view(batch, len(mains), channels, height, width))
                    if consistency is not None:
                        parts_c.append(consistency.view(batch, len(mains), 1, height, width))
                state.add(torch.cat(parts_a, dim=1), torch.cat(parts_c, dim=1) if parts_c else None)
        fused = state.result().reshape(batch * views, channels, height, width)
        out = self._refine(flat, fused).view(batch, views, channels, height, width)
        return (out, state.weights(side_axis=2)) if return_weights else out

    def _align_gathered(self, query, key, flat: Tensor, batch: int, views: int,
                        mains: Optional[Tensor], sides: Tensor):
        """Align the pairs ``(mains[p], sides[p])`` (view indices; ``None``: every view in order)."""
        if mains is not None:
            query = _take(query, batch, views, mains)
        side = _take(flat, batch, views, sides)
        return self.aligner.align(query, _take(key, batch, views, sides), side)

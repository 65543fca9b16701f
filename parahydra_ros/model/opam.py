"""OPAM, the OmniParallax Attention Mechanism (ParaHydra §3.2; model-spec §1).

OPAM(main ``X_m``, side ``X_s``) -> (aligned ``A``, consistency ``C``)::

    HPA (rows):     Q = P_q(SKM_h(X_m)),  K = P_k(SKM_h(X_s)),  value X_s  -> A^h, C^h
    VPA (columns):  Q = P_q(SKM_v(X_m)),  K = P_k(SKM_v(A^h)),  value A^h  -> A^v, C^v
    A = A^v,   C = C^h * C^v                                       (eqs. 12-13)

One parallax-attention stage (:class:`ParallaxAttention`) folds the rows (HPA) or
the columns (VPA) into the batch and attends along the other axis: the score
matrix ``S = tau Q K^T`` (``L x L`` per row), ``M_{s->m} = softmax(S)`` pulls side
content to main positions, ``M_{m->s} = softmax(S^T)``, and the consistency is the
diagonal of the cycle map ``M_{s->m} M_{m->s}`` (iPASSR's form), in [0, 1].

Every aligner here (:class:`OPAM`, :class:`ParallaxAttention2D`) has the same
four-verb interface so that PMIFM can cache per-view work:

* ``query(main)``  - features of a main view, computed once per main;
* ``key(side)``    - features of a side view, computed once per side;
* ``features(x)``  - both of one view (``(query(x), key(x))``, sharing the SKM);
* ``align(query, key, side) -> (aligned, consistency)`` - the per-pair part;
* ``pair_bytes(height, width)`` - working memory of one pair and one sample,
  used to decide how many pairs to batch at once.

All caches are tensors (or tuples of tensors) with the batch on axis 0, so they
can be gathered by view index.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .configs import ModelConfig

__all__ = ["SelectiveKernel", "ParallaxAttention", "OPAM", "ParallaxAttention2D", "OPAM_MODES"]

OPAM_MODES = ("opam", "hpa_only", "vpa_only")
_FLOAT_BYTES = 4


class SelectiveKernel(nn.Module):
    """Selective Kernel Module (SKNet, Li et al. 2019; model-spec §1.1), channel-preserving.

    Split into a 3x3 and a dilated 3x3 (5x5 field) branch, fuse by global average
    pooling and a bottleneck FC (``d = max(C // r, L)``), select with a per-channel
    softmax over the two branches. No BatchNorm: the batch mixes views, whose
    statistics must not leak across views (AMBIGUITY A4); GELU as in MLIC++.
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 32, groups: int = 1):
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        groups = math.gcd(channels, groups)
        self.channels = channels
        self.branch3 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups), nn.GELU())
        self.branch5 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2, groups=groups), nn.GELU())
        self.squeeze = nn.Sequential(nn.Linear(channels, hidden), nn.GELU())
        self.select = nn.Linear(hidden, 2 * channels)

    def forward(self, x: Tensor) -> Tensor:
        u1 = self.branch3(x)
        u2 = self.branch5(x)
        s = (u1 + u2).mean(dim=(2, 3))
        a = self.select(self.squeeze(s)).view(-1, 2, self.channels, 1, 1).softmax(dim=1)
        return u1 * a[:, 0] + u2 * a[:, 1]


def _fold(x: Tensor, axis: str) -> Tensor:
    """``B x C x H x W`` -> ``B x F x C x L``: folded axis ``F`` by the batch, attention along ``L``."""
    if axis == "h":  # rows into the batch, attend along W
        return x.permute(0, 2, 1, 3)
    if axis == "v":  # columns into the batch, attend along H
        return x.permute(0, 3, 1, 2)
    return x.flatten(2).unsqueeze(1)  # "hw": one fold, attend along H*W


def _unfold(t: Tensor, axis: str, height: int, width: int) -> Tensor:
    """Inverse of :func:`_fold` (``B x F x C x L`` -> ``B x C x H x W``)."""
    if axis == "h":
        return t.permute(0, 2, 1, 3)
    if axis == "v":
        return t.permute(0, 2, 3, 1)
    return t.reshape(t.shape[0], t.shape[2], height, width)


def _unfold_map(c: Tensor, axis: str, height: int, width: int) -> Tensor:
    """A per-position map ``B x F x L`` -> ``B x 1 x H x W``."""
    if axis == "h":
        return c.unsqueeze(1)
    if axis == "v":
        return c.transpose(1, 2).unsqueeze(1)
    return c.reshape(c.shape[0], 1, height, width)


class ParallaxAttention(nn.Module):
    """One parallax-attention stage along rows (``axis="h"``, HPA) or columns (``"v"``, VPA).

    Model-spec §1.2 (ParaHydra eqs. 8-11): ``Q = P_q(SKM(X_m))``, ``K = P_k(SKM(X_s))``
    with one shared SKM and separate 1x1 projections ``C -> C_qk``; per row (HPA)
    ``S = C_qk^{-1/2} Q K^T`` (``W x W``), ``M_{s->m} = softmax_j(S)``,
    ``M_{m->s} = softmax_i(S)`` (the softmax of ``S^T``), consistency
    ``C[i] = sum_j M_{s->m}[i, j] M_{m->s}[j, i]`` and aligned ``A = M_{s->m} X_s``:
    the value is the raw side feature, without projection (AMBIGUITY A8).

    ``forward(main, side)`` returns ``(aligned B x C x H x W, consistency B x 1 x H x W)``;
    with ``return_map=True`` also ``M_{s->m}`` as ``B x F x L x L`` (``F`` the folded
    axis: rows for HPA, so ``map[b, r, i, j]`` weighs side column ``j`` for main
    position ``(r, i)``; columns for VPA, ``map[b, c, i, j]`` weighs side row ``j``
    for main position ``(i, c)``).
    """

    def __init__(self, channels: int, cfg: ModelConfig, axis: str = "h",
                 qk_channels: Optional[int] = None, correlation: bool = False):
        super().__init__()
        if axis not in ("h", "v", "hw"):
            raise ValueError(f"axis must be 'h' or 'v' ('hw': ParallaxAttention2D), got {axis!r}")
        qk_channels = qk_channels or channels
        self.axis = axis
        self.scale = 1.0 / math.sqrt(qk_channels)  # AMBIGUITY A5
        self.skm = SelectiveKernel(channels, cfg.sk_reduction, cfg.sk_min, cfg.sk_groups)
        self.to_q = nn.Conv2d(channels, qk_channels, 1)
        self.to_k = nn.Conv2d(channels, qk_channels, 1)
        # Correlation term (not in the paper): S += τ·cos(X_m, X_s) of the channel-centred
        # raw features, τ learnt, 10 at first. On real rectified pairs the raw cosine of
        # Para-JD's inputs peaks within one column of the true disparity at 28-45 % of
        # positions (7-30x chance) where the learnt projections alone were at chance
        # (bench/opam_disparity.py); the term gives the attention that start.
        self.log_correlation_gain = (nn.Parameter(torch.full((1,), math.log(10.0) / 2))
                                     if correlation else None)

    def _correlation(self, x: Tensor) -> Tensor:
        """√τ × unit-length, per-channel-centred features: Q·K then holds τ·cos(X_m, X_s)."""
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        return nn.functional.normalize(centred, dim=1) * self.log_correlation_gain.exp()

    def query_channels(self, main: Tensor, skm: Tensor) -> Tensor:
        """The unfolded, scaled query from ``main`` and ``SKM(main)``."""
        query = self.to_q(skm) * self.scale
        if self.log_correlation_gain is None:
            return query
        return torch.cat([query, self._correlation(main)], dim=1)

    def key_channels(self, side: Tensor, skm: Tensor) -> Tensor:
        """The unfolded key from ``side`` and ``SKM(side)``."""
        key = self.to_k(skm)
        if self.log_correlation_gain is None:
            return key
        return torch.cat([key, self._correlation(side)], dim=1)

    def query(self, main: Tensor) -> Tensor:
        """Scaled query of ``main``, folded: ``B x F x C_qk x L``."""
        return self.fold_query(self.query_channels(main, self.skm(main)))

    def key(self, side: Tensor) -> Tensor:
        """Key of ``side``, folded: ``B x F x C_qk x L``."""
        return self.fold_key(self.project_key(side))

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(query(x), key(x))`` with the shared SKM evaluated once."""
        s = self.skm(x)
        return self.fold_query(self.query_channels(x, s)), self.fold_key(self.key_channels(x, s))

    def project_key(self, side: Tensor) -> Tensor:
        """The unfolded key ``P_k(SKM(side))`` (and the correlation channels): ``B x C_k x H x W``."""
        return self.key_channels(side, self.skm(side))

    def fold_key(self, key: Tensor) -> Tensor:
        """Fold an unfolded key (see :meth:`project_key`)."""
        return _fold(key, self.axis).contiguous()

    def fold_query(self, query: Tensor) -> Tensor:
        """Fold an unfolded query (see :meth:`query_channels`)."""
        return _fold(query, self.axis).contiguous()

    def attend(self, query: Tensor, key: Tensor, side: Tensor, return_map: bool = False):
        """The per-pair part, from :meth:`query` and :meth:`key`; ``side`` is the value.

        The value may carry extra channels (OPAM's propagated VPA key): they are
        aligned like the rest.
        """
        height, width = side.shape[-2:]
        scores = torch.matmul(query.transpose(-1, -2), key)  # B x F x L(main) x L(side)
        side_to_main = scores.softmax(dim=-1)
        main_to_side_t = scores.softmax(dim=-2)  # [i, j] = M_{m->s}[j, i]
        del scores
        # diag(M_{s->m} M_{m->s}) = sum_j M_{s->m}[i, j] M_{m->s}[j, i]
        if main_to_side_t.requires_grad:
            consistency = (side_to_main * main_to_side_t).sum(dim=-1)
        else:  # inference: one map less in memory
            consistency = main_to_side_t.mul_(side_to_main).sum(dim=-1)
        del main_to_side_t
        value = _fold(side, self.axis)  # B x F x C x L
        aligned = torch.matmul(value, side_to_main.transpose(-1, -2))  # B x F x C x L(main)
        out = (_unfold(aligned, self.axis, height, width),
               _unfold_map(consistency, self.axis, height, width))
        return out + (side_to_main,) if return_map else out

    def align(self, query: Tensor, key: Tensor, side: Tensor, extra: Optional[Tensor] = None):
        """``(aligned, consistency)``; with ``extra`` (``B x E x H x W``, e.g. the side image
        at this resolution) also ``extra`` moved by the same attention map, third."""
        if extra is None:
            return self.attend(query, key, side)
        aligned, consistency = self.attend(query, key, torch.cat([side, extra], dim=1))
        return aligned[:, :side.shape[1]], consistency, aligned[:, side.shape[1]:]

    def pair_bytes(self, height: int, width: int) -> int:
        """Working memory of one (main, side) pair of one sample: score and softmax maps."""
        fold, length = {"h": (height, width), "v": (width, height)}.get(
            self.axis, (1, height * width))
        channels = self.to_q.in_channels
        return _FLOAT_BYTES * (3 * fold * length * length + 6 * channels * height * width)

    def forward(self, main: Tensor, side: Tensor, return_map: bool = False):
        return self.attend(self.query(main), self.key(side), side, return_map=return_map)


class ParallaxAttention2D(ParallaxAttention):
    """The ``attn2d`` ablation (model-spec §7, AMBIGUITY A20): one full 2-D parallax attention.

    Flattened ``H*W`` positions, ``S`` of ``HW x HW``; otherwise as
    :class:`ParallaxAttention` (one SKM / P_q / P_k set, cycle-diagonal consistency,
    value ``X_s``). ``O((HW)^2)`` memory: small crops only.
    """

    def __init__(self, channels: int, cfg: ModelConfig, qk_channels: Optional[int] = None,
                 correlation: bool = False):
        super().__init__(channels, cfg, axis="hw", qk_channels=qk_channels, correlation=correlation)


class OPAM(nn.Module):
    """OmniParallax attention: HPA then VPA (model-spec §1.3, eqs. 12-13).

    ``(A^h, C^h) = HPA(X_m, X_s)``; ``(A^v, C^v) = VPA(X_m, A^h)`` (the side of the
    vertical stage is the horizontally aligned feature, AMBIGUITY A9);
    ``A = A^v``, ``C = C^h * C^v``. HPA and VPA have separate weights (A11).

    Args:
        mode: ``"opam"`` (both stages), ``"hpa_only"`` (w/o VPA: ``A^h, C^h``) or
            ``"vpa_only"`` (w/o HPA: ``VPA(X_m, X_s)``).
        vpa_key: how the VPA key of the side ``A^h`` is made (default:
            ``cfg.opam_vpa_key``). ``"aligned"`` (the
            spec): ``P_k^v(SKM_v(A^h))``, one SKM per (main, side) pair.
            ``"propagated"`` (an option, not the paper's wording):
            ``M^h P_k^v(SKM_v(X_s))``, i.e. the side's own VPA key carried along by
            the horizontal attention map like ``X_s`` itself. The 1x1 projection
            commutes with ``M^h`` exactly (its rows sum to 1); only the SKM's
            nonlinearity is moved before the alignment. The SKM then runs once per
            view instead of once per pair, which at Para-JD's second level is
            about a fifth of the joint decoder's arithmetic for V = 3.
    """

    def __init__(self, channels: int, cfg: ModelConfig, mode: str = "opam",
                 vpa_key: Optional[str] = None, correlation: bool = False):
        super().__init__()
        vpa_key = vpa_key or cfg.opam_vpa_key
        if mode not in OPAM_MODES:
            raise ValueError(f"OPAM mode {mode!r} not in {OPAM_MODES}")
        if vpa_key not in ("aligned", "propagated"):
            raise ValueError(f"vpa_key must be 'aligned' or 'propagated', got {vpa_key!r}")
        self.mode = mode
        self.hpa = ParallaxAttention(channels, cfg, "h", correlation=correlation) if mode != "vpa_only" else None
        self.vpa = ParallaxAttention(channels, cfg, "v", correlation=correlation) if mode != "hpa_only" else None
        self.propagate_key = vpa_key == "propagated" and mode == "opam"

    def query(self, main: Tensor) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """The queries of both stages (both depend on the main view only)."""
        return (self.hpa.query(main) if self.hpa is not None else None,
                self.vpa.query(main) if self.vpa is not None else None)

    def key(self, side: Tensor):
        """What the side contributes before pairing: the first stage's key
        (and, with a propagated VPA key, the side's unfolded VPA key)."""
        if self.hpa is None:
            return self.vpa.key(side)
        if self.propagate_key:
            return self.hpa.key(side), self.vpa.project_key(side)
        return self.hpa.key(side)

    def features(self, x: Tensor):
        """``(query(x), key(x))``, each SKM evaluated once."""
        if self.hpa is None:
            q_v, k_v = self.vpa.features(x)
            return (None, q_v), k_v
        q_h, k_h = self.hpa.features(x)
        if self.vpa is None:
            return (q_h, None), k_h
        if self.propagate_key:
            s = self.vpa.skm(x)
            return (q_h, self.vpa.fold_query(self.vpa.query_channels(x, s))), (k_h, self.vpa.key_channels(x, s))
        return (q_h, self.vpa.query(x)), k_h

    def align(self, query, key, side: Tensor, extra: Optional[Tensor] = None):
        """``(aligned, consistency)`` of one (main, side) pair from :meth:`query` and :meth:`key`.

        With ``extra`` (``B x E x H x W``, e.g. the side image at this resolution), also
        ``extra`` moved by the same two attention maps, third: what the alignment loss
        (:mod:`~parahydra_ros.model.alignment`) compares with the main image.
        """
        channels = side.shape[1]
        value = side if extra is None else torch.cat([side, extra], dim=1)
        q_h, q_v = query
        if self.hpa is None:
            aligned, consistency = self.vpa.attend(q_v, key, value)
        elif self.vpa is None:
            aligned, consistency = self.hpa.attend(q_h, key, value)
        else:
            if self.propagate_key:
                k_h, k_v = key
                both, consistency = self.hpa.attend(q_h, k_h, torch.cat([value, k_v], dim=1))
                aligned, k_v = both[:, :value.shape[1]], self.vpa.fold_key(both[:, value.shape[1]:])
            else:
                aligned, consistency = self.hpa.attend(q_h, key, value)
                k_v = self.vpa.key(aligned[:, :channels])
            aligned, consistency_v = self.vpa.attend(q_v, k_v, aligned)
            consistency = consistency * consistency_v
        if extra is None:
            return aligned, consistency
        return aligned[:, :channels], consistency, aligned[:, channels:]

    def pair_bytes(self, height: int, width: int) -> int:
        stages = [s for s in (self.hpa, self.vpa) if s is not None]
        return max(s.pair_bytes(height, width) for s in stages)

    def forward(self, main: Tensor, side: Tensor) -> tuple[Tensor, Tensor]:
        """``(aligned B x C x H x W, consistency B x 1 x H x W in [0, 1])``."""
        return self.align(self.query(main), self.key(side), side)

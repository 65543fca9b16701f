"""Context modules of the slice + checkerboard entropy models (model-spec §4, §7).

Para-EM and its MLIC++-derived ablations are built from these pieces:

* :class:`EntropyParameters` — the EP networks of eq. 4 (MLIC++ ``EntropyParameters``):
  a stack of 1×1 convs. Being point-wise, they are evaluated on *squeezed* parts
  (only the positions a part codes), which halves their cost and is exact.
* :class:`ChannelContextHead` — PCCM's head on ``P_k`` (c channels) or, for
  ``para_wo_pccm``/``mlicpp``, MLIC++'s ``ChannelContext`` on the concatenated earlier
  slices (k·c channels); output 4c.
* :class:`LocalContext` — checkerboard attention in a 5×5 window (MLIC++ ``LocalContext``),
  evaluated only at the non-anchor positions that consume it (§4.3).
* :class:`GlobalIntraContext` — PGCM (§4.4) when fed ``P_k``; MLIC++'s
  ``LinearGlobalIntraContext`` (the ``para_wo_pgcm`` ablation) when fed ``ŷ^{(k−1)}``.
* :class:`GlobalInterContext` — MLIC++'s ``LinearGlobalInterContext`` (``mlicpp`` only).
* :class:`LatentResidualPrediction` — LRP (§4.7), ``0.5·tanh`` of a conv stack.

Linear attention is :func:`parahydra_ros.model.attention.linear_attention`
(key softmaxed over positions, query over channels per head).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from .attention import linear_attention
from .checkerboard import (
    ckbd_anchor,
    ckbd_nonanchor,
    nonanchor_flat_index,
    squeeze_anchor,
    squeeze_nonanchor,
    unsqueeze_nonanchor,
)

__all__ = [
    "EntropyParameters",
    "ChannelContextHead",
    "LocalContext",
    "GlobalIntraContext",
    "GlobalInterContext",
    "LatentResidualPrediction",
    "inter_context_heads",
]


class EntropyParameters(nn.Sequential):
    """EP network: 1×1 convs ``in → hidden… → out`` with an activation between them.

    Para-EM (model-spec §4.5): hidden ``cfg.ep_hidden`` (paper 320-256-128), GELU,
    ``out = 2c`` split as ``(σ, μ) = chunk(·, 2)`` (scales first, as MLIC++).
    """

    def __init__(self, in_ch: int, out_ch: int, hidden: Sequence[int], act: type[nn.Module] = nn.GELU):
        widths = [in_ch, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, 1), act()]
        layers.append(nn.Conv2d(widths[-1], out_ch, 1))
        super().__init__(*layers)

    @property
    def output_layer(self) -> nn.Conv2d:
        return self[-1]


class ChannelContextHead(nn.Sequential):
    """conv3×3 ``in → h1`` → GELU → conv3×3 ``h1 → h2`` → GELU → conv3×3 ``h2 → out``.

    PCCM's ``Head_k`` (in = c, §4.2) and MLIC++'s ``ChannelContext`` (in = k·c); ``out = 4c``.
    """

    def __init__(self, in_ch: int, out_ch: int, hidden: Sequence[int]):
        h1, h2 = hidden
        super().__init__(
            nn.Conv2d(in_ch, h1, 3, padding=1), nn.GELU(),
            nn.Conv2d(h1, h2, 3, padding=1), nn.GELU(),
            nn.Conv2d(h2, out_ch, 3, padding=1),
        )


class LatentResidualPrediction(nn.Module):
    """LRP (MLIC++ ``LatentResidualPrediction``, model-spec §4.7): ``0.5·tanh(conv stack)``."""

    def __init__(self, in_ch: int, out_ch: int, hidden: Sequence[int]):
        super().__init__()
        self.transform = ChannelContextHead(in_ch, out_ch, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * torch.tanh(self.transform(x))


def _relative_position_index(window: int) -> Tensor:
    """Swin-style index into a ``(2w−1)²`` bias table for every pair of window positions."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # 2 × T × T
    return rel[0] * (2 * window - 1) + rel[1]


class _WindowGeometry(NamedTuple):
    """Where the windows of the non-anchor centres fall, for one latent size.

    Window positions are in :attr:`LocalContext.offsets` order (anchors first).
    """

    index: Tensor  # L'·T flat positions in the zero-padded grid (centres in squeezed order)
    inside: Tensor  # T×L': the window position lies inside the latent
    anchor_columns: Tensor  # L'×1×T_a additive mask of the anchor offsets: 0 inside, −inf outside


class LocalContext(nn.Module):
    """Checkerboard attention in a ``window×window`` neighbourhood (model-spec §4.3).

    After MLIC++ ``LocalContext``: tokens → LayerNorm → q, k, v; for every position a
    window of q, k, v (zero padding) attends within itself with a relative-position
    bias ``B`` and a mask that adds −100 to every pair that is not anchor↔anchor; the
    attended window is fused by a ``window×window`` conv (c → 2c), then ``Linear`` and
    a pre-norm MLP residual.

    Only non-anchor positions consume this context, so it is evaluated only there:
    ``forward`` returns the **squeezed** non-anchor map ``B×2c×h×(w/2)``.

    Evaluation. The input is the anchor-only slice (exact zeros at non-anchors), so in
    the window of a non-anchor centre a row's query is either a decoded anchor, the
    constant token ``q₀ = qkv(LayerNorm(0))`` (a non-anchor inside the latent) or 0
    (padding). The mask then means, row by row:

    * anchor query: attend to the anchors inside the latent only (the −100 pairs weigh
      e^−100 ≈ 4e−44 relative to them: exactly nothing in float32). This is a small
      ``T_a×T_a`` attention (``T_a`` = 12 of the 25 window positions).
    * any other query: the whole row is shifted by −100, which softmax ignores, so it
      attends to all ``T`` positions with scores ``q₀·k_j·s + B_ij`` (or ``B_ij``).
      Since ``exp(q₀·k_j·s + B_ij) = exp(q₀·k_j·s)·exp(B_ij)``, all these rows come
      from ``T`` exponentials per centre and one product with the constant matrix
      ``exp(B)`` — instead of ``T²`` exponentials and a softmax per row.

    The result equals MLIC++'s (tested against a direct implementation) at a fraction
    of the cost; it relies on the zeros at the non-anchors, which Para-EM guarantees.

    Args:
        dim: channels ``c`` of the slice.
        window: window side (paper: 5).
        heads: attention heads (paper: 2); head channels are contiguous.
        mlp_ratio: MLP hidden width ``= 2c · mlp_ratio`` (MLIC++: 2).
    """

    def __init__(self, dim: int, window: int = 5, heads: int = 2, mlp_ratio: float = 2.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{heads} heads do not divide {dim} channels")
        if window % 2 == 0:
            raise ValueError(f"window must be odd, got {window}")
        self.dim, self.window, self.heads = dim, window, heads
        self.scale = (dim // heads) ** -0.5
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.relative_position_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        trunc_normal_(self.relative_position_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_position_index(window), persistent=False)
        # Window positions, row-major, reordered so that those of odd parity (the
        # anchors, relative to a non-anchor centre) come first: T_a of them.
        offsets = torch.arange(window * window)
        odd = (offsets // window + offsets % window) % 2 == 1
        self.register_buffer("offsets", torch.cat([offsets[odd], offsets[~odd]]), persistent=False)
        self.anchor_count = int(odd.sum())
        self.fusion = nn.Conv2d(dim, 2 * dim, window)
        self.proj = nn.Linear(2 * dim, 2 * dim)
        self.norm2 = nn.LayerNorm(2 * dim)
        hidden = int(2 * dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * dim))
        self._geometry: dict[tuple, _WindowGeometry] = {}

    def _geometry_for(self, h: int, w: int, device: torch.device) -> _WindowGeometry:
        # Inference tensors must not reach autograd, so inference mode gets its own entry.
        key = (h, w, str(device), torch.is_inference_mode_enabled())
        if key not in self._geometry:
            with torch.no_grad():
                pad, win = self.window // 2, self.window
                centres = nonanchor_flat_index(h, w, device)
                offsets = self.offsets.to(device)
                r = (centres // w)[:, None] + (offsets // win)[None]  # padded coordinates, L'×T
                c = (centres % w)[:, None] + (offsets % win)[None]
                inside = (r >= pad) & (r < h + pad) & (c >= pad) & (c < w + pad)
                columns = torch.zeros(inside.shape[0], 1, self.anchor_count, device=device)
                columns = columns.masked_fill(~inside[:, None, : self.anchor_count], float("-inf"))
                index = (r * (w + 2 * pad) + c).reshape(-1)
                self._geometry[key] = _WindowGeometry(index, inside.t().contiguous(), columns)
        return self._geometry[key]

    def forward(self, anchor_hat: Tensor) -> Tensor:
        """``anchor_hat``: ``B×c×h×w``, zeros at non-anchors → ``B×2c×h×(w/2)`` (non-anchors)."""
        b, c, h, w = anchor_hat.shape
        t, ta, hd, heads = self.window * self.window, self.anchor_count, c // self.heads, self.heads
        pad = self.window // 2
        geo = self._geometry_for(h, w, anchor_hat.device)
        n = geo.inside.shape[1]
        tokens = self.qkv(self.norm1(anchor_hat.flatten(2).transpose(1, 2)))  # B×L×3c
        q0 = self.qkv(self.norm1(anchor_hat.new_zeros(1, c)))[0, :c].reshape(heads, 1, 1, hd)
        # Zero-padded token grid (position-major); the windows of every non-anchor centre
        # gathered in one go and laid out (q/k/v) × heads × T × (B·L') × head-channels.
        grid = F.pad(tokens.reshape(b, h, w, 3 * c), (0, 0, pad, pad, pad, pad)).reshape(b, -1, 3 * c)
        windows = grid.index_select(1, geo.index).reshape(b, n, t, 3, heads, hd)
        q, k, v = windows.permute(3, 4, 2, 0, 1, 5).reshape(3, heads, t, b * n, hd).unbind(0)
        order = self.offsets
        bias = self.relative_position_table[self.relative_position_index[order][:, order].reshape(-1)]
        bias = bias.reshape(t, t, heads).permute(2, 0, 1)  # heads×T×T (query, key)
        inside = geo.inside if b == 1 else geo.inside.repeat(1, b)  # T×(B·L')
        inside = inside[None, :, :, None]

        # Rows whose query is q₀ (a non-anchor inside) or 0 (padding): weights
        # exp(q₀·k_j·s)·exp(B_ij) and exp(B_ij); each row is normalised by its own sum.
        logits = (k * q0).sum(-1, keepdim=True) * self.scale  # heads×T×(B·L')×1
        e = (logits - logits.amax(1, keepdim=True)).exp()
        expb = (bias - bias.amax(-1, keepdim=True)).exp()  # heads×T×T
        sums = torch.bmm(expb, torch.cat([e * v, e, v], dim=-1).reshape(heads, t, -1))
        sums = sums.reshape(heads, t, b * n, 2 * hd + 1)
        from_q0 = sums[..., :hd] / sums[..., hd:hd + 1]
        from_zero = sums[..., hd + 1:] / expb.sum(-1)[:, :, None, None]

        # Rows whose query is a decoded anchor: attention among the anchors inside.
        qa, ka, va = (x[:, :ta].transpose(1, 2) for x in (q, k, v))  # heads×(B·L')×T_a×hd
        columns = geo.anchor_columns if b == 1 else geo.anchor_columns.repeat(b, 1, 1)
        scores = qa @ ka.transpose(-2, -1) * self.scale + bias[:, None, :ta, :ta] + columns
        from_anchor = (scores.softmax(dim=-1) @ va).transpose(1, 2)  # heads×T_a×(B·L')×hd

        out = torch.cat([
            torch.where(inside[:, :ta], from_anchor, from_zero[:, :ta]),
            torch.where(inside[:, ta:], from_q0[:, ta:], from_zero[:, ta:]),
        ], dim=1)  # heads×T×(B·L')×hd
        # Window tensor c×(window×window) per centre, fused by the window-sized conv.
        out = out.permute(2, 0, 3, 1).reshape(b * n, c * t)
        weight = self.fusion.weight.flatten(2)[:, :, order].flatten(1)
        x = F.linear(out, weight, self.fusion.bias).reshape(b, n, 2 * c)
        x = self.proj(x)
        x = x + self.mlp(self.norm2(x))
        return x.transpose(1, 2).reshape(b, 2 * c, h, w // 2)


def _projection(dim: int) -> nn.Sequential:
    """conv1×1 followed by a depth-wise conv3×3 (MLIC++'s q/k/v projections)."""
    return nn.Sequential(nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 3, padding=1, groups=dim))


class GlobalIntraContext(nn.Module):
    """PGCM (model-spec §4.4) / MLIC++ ``LinearGlobalIntraContext`` (``para_wo_pgcm``).

    The anchor↔non-anchor correlation is estimated on a conditioning map ``cond``
    (``P_k`` for PGCM, ``ŷ^{(k−1)}`` for MLIC++): queries from its non-anchors, keys
    from its anchors; values are the current slice's decoded anchors. The linear
    attention's output lands on the non-anchor positions and is refined by
    ``R = conv5×5 (c→2c)`` and ``R + DRB(R)``.

    Returns the full ``B×2c×h×w`` map ``G_k`` (only its non-anchors are used).
    """

    def __init__(self, dim: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.queries, self.keys, self.values = _projection(dim), _projection(dim), _projection(dim)
        self.reprojection = nn.Conv2d(dim, 2 * dim, 5, padding=2)
        self.mlp = nn.Sequential(
            nn.Conv2d(2 * dim, 4 * dim, 1), nn.GELU(),
            nn.Conv2d(4 * dim, 4 * dim, 3, padding=1, groups=4 * dim), nn.GELU(),
            nn.Conv2d(4 * dim, 2 * dim, 1),
        )

    def forward(self, cond: Tensor, anchor_hat: Tensor) -> Tensor:
        b, c, h, w = cond.shape
        # Masking before the projections matters: the depth-wise 3×3 mixes neighbours.
        query = squeeze_nonanchor(self.queries(ckbd_nonanchor(cond))).reshape(b, c, -1)
        key = squeeze_anchor(self.keys(ckbd_anchor(cond))).reshape(b, c, -1)
        value = squeeze_anchor(self.values(anchor_hat)).reshape(b, c, -1)
        out = linear_attention(query, key, value, self.heads).reshape(b, c, h, w // 2)
        r = self.reprojection(unsqueeze_nonanchor(out))
        return r + self.mlp(r)


def inter_context_heads(dim: int) -> int:
    """Heads of MLIC++'s inter-slice context at width ``dim = k·c`` (model-spec §7).

    MLIC++ uses ``dim // 32``, which is 0 or does not divide ``dim`` at small widths;
    take the largest divisor of ``dim`` that is ``≤ max(1, dim // 32)``.
    """
    cap = max(1, dim // 32)
    return max(d for d in range(1, cap + 1) if dim % d == 0)


class GlobalInterContext(nn.Module):
    """MLIC++ ``LinearGlobalInterContext`` on the concatenated earlier slices (``mlicpp``).

    q, k, v = conv1×1 + depth-wise conv3×3 of ``x`` (``dim = k·c``); linear attention
    over all positions; ``R = conv5×5 (dim → 3·out/2)``; output ``skip(R) + MLP(R)``.
    """

    def __init__(self, dim: int, out_dim: int, heads: int | None = None):
        super().__init__()
        self.heads = heads or inter_context_heads(dim)
        self.queries, self.keys, self.values = _projection(dim), _projection(dim), _projection(dim)
        mid = out_dim * 3 // 2
        self.reprojection = nn.Conv2d(dim, mid, 5, padding=2)
        self.mlp = nn.Sequential(
            nn.Conv2d(mid, 2 * out_dim, 1), nn.GELU(),
            nn.Conv2d(2 * out_dim, 2 * out_dim, 3, padding=1, groups=2 * out_dim), nn.GELU(),
            nn.Conv2d(2 * out_dim, out_dim, 1),
        )
        self.skip = nn.Conv2d(mid, out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        out = linear_attention(
            self.queries(x).flatten(2), self.keys(x).flatten(2), self.values(x).flatten(2), self.heads
        ).reshape(b, c, h, w)
        r = self.reprojection(out)
        return self.skip(r) + self.mlp(r)

"""Linear ("efficient") attention, written once for every module that needs it.

Shen et al., "Efficient Attention: Attention with Linear Complexities" (WACV 2021),
as used by LDMIC's joint context transfer (``Xinjie-Q/LDMIC`` ``models/ldmic.py``,
class ``EfficientAttention``) and by MLIC++'s linear global contexts. Users here:

* LDMIC's JCT / Multi-JCT and the ``jct`` ablation of Para-JD (model-spec §2.3, §7),
  through :class:`EfficientAttention`;
* Para-EM's PGCM (model-spec §4.4), through :func:`linear_attention` on
  positions gathered from a checkerboard.

Per head ``h`` (channel slices of the query/key and of the value)::

    K_h <- softmax over the L positions      (d_k/heads x L)
    Q_h <- softmax over the channels         (d_k/heads x L)
    ctx_h = K_h V_h^T                        (d_k/heads x d_v/heads)
    out_h = ctx_h^T Q_h                      (d_v/heads x L)

Cost ``O(L * d_k * d_v / heads)``: linear in the number of positions.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["linear_attention", "EfficientAttention"]


def linear_attention(query: Tensor, key: Tensor, value: Tensor, heads: int) -> Tensor:
    """Multi-head linear attention of LDMIC / Efficient Attention.

    Args:
        query: ``B x d_k x L_q`` (raw logits; softmaxed over channels per head here).
        key: ``B x d_k x L`` (raw logits; softmaxed over the ``L`` positions here).
        value: ``B x d_v x L``.
        heads: number of heads; must divide ``d_k`` and ``d_v``.

    Returns:
        ``B x d_v x L_q``. In LDMIC ``L_q == L`` (query and key at the same positions);
        the math does not need it.
    """
    b, d_k, l_q = query.shape
    _, d_v, length = value.shape
    if key.shape != (b, d_k, length):
        raise ValueError(f"key shape {tuple(key.shape)} does not match query {tuple(query.shape)} "
                         f"and value {tuple(value.shape)}")
    if d_k % heads or d_v % heads:
        raise ValueError(f"{heads} heads do not divide d_k={d_k} and d_v={d_v}")
    q = query.reshape(b * heads, d_k // heads, l_q).softmax(dim=1)
    k = key.reshape(b * heads, d_k // heads, length).softmax(dim=2)
    v = value.reshape(b * heads, d_v // heads, length)
    context = torch.bmm(k, v.transpose(1, 2))  # (B*heads) x dk_h x dv_h
    out = torch.bmm(context.transpose(1, 2), q)  # (B*heads) x dv_h x L_q
    return out.reshape(b, d_v, l_q)


class EfficientAttention(nn.Module):
    """LDMIC's ``EfficientAttention(target, input)`` (model-spec §2.3).

    ``keys``/``values`` are 1x1 convs of ``input``, ``queries`` a 1x1 conv of
    ``target``; the heads are concatenated and reprojected by a 1x1 conv to the
    target's width. There is no residual inside (the caller adds one).

    Args:
        channels: width ``C`` of both ``target`` and ``input``.
        key_channels: ``d_k`` (LDMIC: ``C // 8``).
        value_channels: ``d_v`` (LDMIC: ``C // 4``).
        heads: LDMIC uses 2.
    """

    def __init__(self, channels: int, key_channels: int | None = None,
                 value_channels: int | None = None, heads: int = 2):
        super().__init__()
        key_channels = key_channels or max(channels // 8, heads)
        value_channels = value_channels or max(channels // 4, heads)
        self.heads = heads
        self.queries = nn.Conv2d(channels, key_channels, 1)
        self.keys = nn.Conv2d(channels, key_channels, 1)
        self.values = nn.Conv2d(channels, value_channels, 1)
        self.reprojection = nn.Conv2d(value_channels, channels, 1)

    def query(self, target: Tensor) -> Tensor:
        """The query projection of ``target`` (cacheable when one target meets many inputs)."""
        return self.queries(target)

    def key(self, input: Tensor) -> tuple[Tensor, Tensor]:  # noqa: A002 (LDMIC's name)
        """The key and value projections of ``input``."""
        return self.keys(input), self.values(input)

    def attend(self, queries: Tensor, keys_values: tuple[Tensor, Tensor]) -> Tensor:
        """Attention from precomputed projections (see :meth:`query`, :meth:`key`)."""
        keys, values = keys_values
        b, _, h, w = queries.shape
        out = linear_attention(queries.flatten(2), keys.flatten(2), values.flatten(2), self.heads)
        return self.reprojection(out.reshape(b, -1, h, w))

    def forward(self, target: Tensor, input: Tensor) -> Tensor:  # noqa: A002
        """Content of ``input`` attended by ``target``: ``B x C x H x W``."""
        return self.attend(self.query(target), self.key(input))

"""LDMIC's multi-view joint context transfer (model-spec §2.3; ``jd_fusion = "ldmic"``).

``Xinjie-Q/LDMIC`` ``models/ldmic.py``, class ``Multi_JointContextTransfer``::

    r_i  = RB(RB(x_i))                              shared trunk, C -> C
    r_-i = mean_{j != i} r_j                        average pooling of the other views
    A_i  = EfficientAttention(target=r_i, input=r_-i)
    x_i' = x_i + refine(concat[A_i, r_i]),  refine = RB(2C->C) -> RB(C->C)
"""
from __future__ import annotations

import torch
from compressai.layers import ResidualBlock
from torch import Tensor, nn

from .attention import EfficientAttention

__all__ = ["MultiJCT"]


class MultiJCT(nn.Module):
    """LDMIC Multi-JCT over ``B x V x C x H x W``; ``V = 1`` returns the input itself."""

    def __init__(self, channels: int, heads: int = 2):
        super().__init__()
        self.trunk = nn.Sequential(ResidualBlock(channels, channels), ResidualBlock(channels, channels))
        self.attention = EfficientAttention(channels, heads=heads)
        self.refine = nn.Sequential(ResidualBlock(2 * channels, channels),
                                    ResidualBlock(channels, channels))

    def fuse_views(self, x: Tensor) -> Tensor:
        batch, views, channels, height, width = x.shape
        if views == 1:
            return x
        flat = x.reshape(batch * views, channels, height, width)
        r = self.trunk(flat)
        r5 = r.view(batch, views, channels, height, width)
        others = (r5.sum(dim=1, keepdim=True) - r5) / (views - 1)  # mean over j != i
        attended = self.attention(r, others.reshape_as(r))
        out = flat + self.refine(torch.cat([attended, r], dim=1))
        return out.view(batch, views, channels, height, width)

    def refine_alone(self, main: Tensor) -> Tensor:
        """A view without side views (``B x C x H x W``): its own trunk feature stands in for
        the attended one, so the refinement's capacity does not need a side view."""
        r = self.trunk(main)
        return main + self.refine(torch.cat([r, r], dim=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse_views(x)

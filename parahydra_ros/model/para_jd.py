"""Para-JD, the Parallax Joint Decoder (ParaHydra §3.4, eq. 17; model-spec §3.3).

Two submodules, each a fusion across views followed by a deconvolutional
network, where LDMIC puts its two JCTs::

    y_hat_i ─ PMIFM_1 (C=M, h x w) ─ Deconv_1 ─ PMIFM_2 (C=N, H/4 x W/4) ─ Deconv_2 ─ x_hat_i
              deconv5x5 s2 M->N, IGDN,           deconv5x5 s2 N->N, IGDN,
              deconv5x5 s2 N->N, IGDN            deconv5x5 s2 N->3

Every view is refined from the same inputs (Jacobi style): ``u_i = PMIFM_1(y_i,
{y_j}_{j != i})``, and likewise at the second level. Weights are shared over views.

A view without side views (a single camera, a partner that dropped out, or
``joint=False``) still runs each PMIFM's refinement ``R``, with the view itself as
the fused feature: ``u = y + R([y, y])``, which is what OPAM returns for a side
identical to the main. Decoder capacity then does not depend on whether a side view
is present, so joint decoding gains over separate decoding only by what the other
views carry (issue 12: a model whose refinement ran only with a side learnt to use
any second picture, even an unrelated one or the view itself, as a trigger).

Each fusion's residual is scaled by a learnable gate initialised at 0 (as in
ReZero, Bachlechner et al. 2020): ``u = y + g·(PMIFM(y, sides) − y)``. An untrained
joint decoder is then exactly the separate one, so multi-view fine-tuning of a
single-view-pretrained model (how a CPU budget trains it) starts from the
single-view quality and only adds what the fusion is worth. The paper does not
say; with ``g = 1`` this is the paper's Para-JD.

``cfg.jd_fusion`` picks the fusion (model-spec §7): ``pmifm`` (OPAM), ``jct``,
``attn2d``, ``hpa_only``, ``vpa_only`` (PMIFM with another aligner), ``ldmic``
(LDMIC Multi-JCT) or ``none`` (no fusion: Sep Enc-Dec).
"""
from __future__ import annotations

from typing import Optional

import torch
from compressai.layers import GDN
from compressai.models.utils import deconv
from torch import Tensor, nn

from .configs import ModelConfig
from .ldmic_fusion import MultiJCT
from .pmifm import PMIFM

__all__ = ["ParaJD"]

_PMIFM_ATTENTION = {"pmifm": "opam", "jct": "jct", "attn2d": "attn2d",
                    "hpa_only": "hpa_only", "vpa_only": "vpa_only"}


def _fusion(channels: int, cfg: ModelConfig) -> Optional[nn.Module]:
    if cfg.jd_fusion == "none":
        return None
    if cfg.jd_fusion == "ldmic":
        return MultiJCT(channels, heads=2)
    return PMIFM(channels, cfg, attention=_PMIFM_ATTENTION[cfg.jd_fusion], correlation=cfg.opam_correlation)


class ParaJD(nn.Module):
    """Joint decoder of ``V`` views' latents ``B x V x M x h x w`` -> ``B x V x 3 x 16h x 16w``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        N, M = cfg.N, cfg.M
        self.fusion1 = _fusion(M, cfg)
        self.deconv1 = nn.Sequential(deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True))
        self.fusion2 = _fusion(N, cfg)
        self.deconv2 = nn.Sequential(deconv(N, N), GDN(N, inverse=True), deconv(N, 3))
        self.gates = nn.Parameter(torch.zeros(2))  # fusion residual gates (see module doc)

    def _fuse(self, level: int, x: Tensor, joint: bool) -> Tensor:
        fusion = (self.fusion1, self.fusion2)[level]
        if fusion is None:
            return x
        if joint and x.shape[1] > 1:
            fused = fusion.fuse_views(x)
        else:
            fused = fusion.refine_alone(x.flatten(0, 1)).view_as(x)
        return x + self.gates[level] * (fused - x)

    @staticmethod
    def _per_view(layers: nn.Module, x: Tensor) -> Tensor:
        """Apply ``layers`` to every view (views on the batch axis).

        Channels-last memory: oneDNN's transposed convolutions run about a third
        faster on CPU that way (most of all the last one, with 3 output channels).
        """
        batch, views = x.shape[:2]
        out = layers(x.flatten(0, 1).contiguous(memory_format=torch.channels_last))
        return out.view(batch, views, *out.shape[1:])

    def forward(self, y_hat: Tensor, joint: bool = True, return_features: bool = False):
        """Decode ``y_hat`` (``B x V x M x h x w``) to unclamped ``x_hat`` (``B x V x 3 x 16h x 16w``).

        ``joint=False`` decodes every view without side views (each view alone, with the
        same weights), for joint-versus-separate comparisons of one bitstream.
        ``return_features=True`` also returns the inputs of the two fusions
        (``[ŷ, Deconv_1(u)]``, each ``B x V x C x h x w``), for the alignment loss.
        """
        if y_hat.dim() != 5:
            raise ValueError(f"ParaJD expects B x V x M x h x w latents, got shape {tuple(y_hat.shape)}")
        u = self._fuse(0, y_hat, joint)
        level2 = self._per_view(self.deconv1, u)
        x_hat = self._per_view(self.deconv2, self._fuse(1, level2, joint)).contiguous()
        return (x_hat, [y_hat, level2]) if return_features else x_hat

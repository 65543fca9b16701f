"""LDMIC-fast's checkerboard entropy model (the ``ldmic_ckbd`` variant; model-spec §7.1).

After ``Xinjie-Q/LDMIC`` ``Multi_LDMIC_checkboard`` (He et al. 2021 checkerboard
context): one checkerboard over all ``M`` channels, no channel slices::

    anchors:      (σ, μ) = EP([0 (2M), Φ])
    non-anchors:  (σ, μ) = EP([CheckerboardMaskedConv2d_5×5(M→2M)(ŷa), Φ])

with one EP network (conv1×1 ``4M → 10M/3 → 8M/3 → 2M``, LeakyReLU) shared by both
parts and ``(σ, μ) = chunk`` (scales first, as that class does). The anchors' zero
context is kept (rather than dropping those input channels) so the layer shapes
are LDMIC's.

Bitstream: LDMIC writes four strings (``y_b, y_c`` anchors, ``y_a, y_d`` non-anchors);
here, as for every entropy model of this package, ONE ANS string per view holds
the anchors then the non-anchors, each part's symbols by CDF index and in C-order
of the squeezed ``M×h×(w/2)`` tensor (model-spec §5, ``model.entropy_coder``). The
gain and the coding conventions are those of :mod:`parahydra_ros.model.para_em`.
"""
from __future__ import annotations

import torch
from compressai.layers import CheckerboardMaskedConv2d
from torch import Tensor, nn

from .checkerboard import squeeze_anchor, squeeze_nonanchor, unsqueeze_anchor, unsqueeze_nonanchor
from .configs import ModelConfig
from .contexts import EntropyParameters
from .latent_codec import LatentEntropyModel, _Coder

__all__ = ["LdmicCheckerboardEntropyModel"]


class LdmicCheckerboardEntropyModel(LatentEntropyModel):
    """LDMIC-fast: checkerboard masked-conv context + hyperprior, all ``M`` channels at once."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        M = cfg.M
        self.M = M
        self.context_prediction = CheckerboardMaskedConv2d(M, 2 * M, kernel_size=5, padding=2)
        self.entropy_parameters = EntropyParameters(
            4 * M, 2 * M, (M * 10 // 3, M * 8 // 3), act=nn.LeakyReLU
        )

    @property
    def latent_channels(self) -> int:
        return self.M

    def _run(self, phi: Tensor, gain: Tensor, coder: _Coder) -> Tensor:
        channels = slice(0, self.M)
        phi_a = squeeze_anchor(phi)
        zeros = phi_a.new_zeros(phi_a.shape)  # 2M channels, like LDMIC's zero context
        scale, mean = self.entropy_parameters(torch.cat([zeros, phi_a], 1)).chunk(2, 1)
        y_anchor = unsqueeze_anchor(coder.code(channels, True, scale, mean, gain))
        context = squeeze_nonanchor(self.context_prediction(y_anchor))
        params = self.entropy_parameters(torch.cat([context, squeeze_nonanchor(phi)], 1))
        scale, mean = params.chunk(2, 1)
        return y_anchor + unsqueeze_nonanchor(coder.code(channels, False, scale, mean, gain))

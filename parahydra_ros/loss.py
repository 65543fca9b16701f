"""ParaHydra's rate–distortion loss (paper eq. 6; LDMIC ``Multi_MSE_Loss``).

``L = mean over samples of [ λ_q · D(x, x̂) + R ]`` where ``R`` is the bits per pixel
of every view of the group (averaged over views) and ``λ_q`` the λ of the sample's
quality level. ``D`` is the MSE of [0, 1] images (no 255² factor, LDMIC convention)
or ``1 − MS-SSIM``.
"""
from __future__ import annotations

import torch
from pytorch_msssim import ms_ssim
from torch import Tensor, nn


class RateDistortionLoss(nn.Module):
    """λ·D + bpp for groups of views, with a λ per quality level."""

    def __init__(self, lambdas: tuple[float, ...], metric: str = "mse"):
        super().__init__()
        if metric not in ("mse", "ms-ssim"):
            raise ValueError(f"metric must be mse or ms-ssim, got {metric!r}")
        self.metric = metric
        self.register_buffer("lambdas", torch.tensor(lambdas, dtype=torch.float32), persistent=False)

    def forward(self, output: dict, x: Tensor, quality: Tensor) -> dict[str, Tensor]:
        """``x``: B×V×3×H×W; ``output``: the model's forward; ``quality``: (B,)."""
        B, V, _, H, W = x.shape
        bits = sum(
            (-torch.log2(lik.clamp_min(1e-9))).flatten(1).sum(1).view(B, V).sum(1)
            for lik in output["likelihoods"].values()
        )
        bpp = bits / (V * H * W)  # per sample: mean bpp over its views
        x_hat = output["x_hat"]
        mse = (x_hat - x).pow(2).flatten(2).mean(2)  # B×V
        if self.metric == "mse":
            distortion = mse.mean(1)
        else:
            flat_hat, flat = x_hat.flatten(0, 1).clamp(0, 1), x.flatten(0, 1)
            scores = ms_ssim(flat_hat, flat, data_range=1.0, size_average=False).view(B, V)
            distortion = (1 - scores).mean(1)
        lam = self.lambdas.to(x.device)[quality]
        loss = (lam * distortion + bpp).mean()
        psnr = -10 * torch.log10(mse.detach().clamp_min(1e-10)).mean()
        return {"loss": loss, "bpp": bpp.mean().detach(), "mse": mse.mean().detach(), "psnr": psnr}


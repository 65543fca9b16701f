"""Per-view analysis transform and hyperprior transforms (model-spec §3.1, §3.2; LDMIC style)."""
from __future__ import annotations

from torch import nn

from compressai.layers import GDN
from compressai.models.utils import conv, deconv


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """``g_a``: 3×H×W → M×H/16×W/16 (four stride-2 5×5 convs with GDN)."""
    return nn.Sequential(
        conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)
    )


def hyper_analysis(N: int, M: int) -> nn.Sequential:
    """``h_a``: M×h×w → N×h/4×w/4."""
    return nn.Sequential(
        conv(M, N, kernel_size=3, stride=1), nn.LeakyReLU(inplace=True),
        conv(N, N), nn.LeakyReLU(inplace=True),
        conv(N, N),
    )


def hyper_synthesis(N: int, M: int) -> nn.Sequential:
    """``h_s``: N×h/4×w/4 → Φ, 2M×h×w, the hyperprior feature fed whole to every EP network."""
    return nn.Sequential(
        deconv(N, N), nn.LeakyReLU(inplace=True),
        deconv(N, M * 3 // 2), nn.LeakyReLU(inplace=True),
        conv(M * 3 // 2, M * 2, kernel_size=3, stride=1),
    )

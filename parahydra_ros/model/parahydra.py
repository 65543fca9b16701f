"""ParaHydra: distributed multi-view image compression with OmniParallax attention.

"Parallax to Align Them All: An OmniParallax Attention Mechanism for Distributed
Multi-View Image Compression" (ParaHydra). Each view is encoded alone
(``g_a`` → hyperprior → Para-EM); the joint decoder entropy-decodes every view
independently and reconstructs all of them together with Para-JD::

    camera i:  x_i ─g_a─► y_i ─h_a─► z_i ─EB─► z-string
                           └──── Para-EM(Φ_i = h_s(ẑ_i)) ──► y-string      (no other view)

    decoder:   strings_i ─► ẑ_i ─► Φ_i ─► ŷ_i          for every view i, independently
               Para-JD(ŷ_1 … ŷ_V) ─► x̂_1 … x̂_V          (PMIFM across views)

Weights are shared across views, so any number of views ≥ 1 decodes.

Rate control: one model carries ``Q`` quality levels, each a learned gain vector on
``y`` (M channels) and on ``z`` (N channels), after Cui et al. 2021 ("Asymmetric
gained deep image compression"). Para-EM predicts (σ, μ) for the *normalised*
latent and codes ``round((y − μ)·g)``, i.e. ``1/g`` is a per-channel quantisation
step; ``z`` is coded as ``z·g_z`` by one EntropyBottleneck. A robot can change its
quality per frame without reloading weights. ``log_gains_at`` carries trained gains
to other λ (``parahydra train --init`` with ``--lambdas``), so a rate point can be added
to a trained model.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from compressai.entropy_models import EntropyBottleneck
from compressai.models.base import CompressionModel
from compressai.ops import quantize_ste

from .configs import PAD_MULTIPLE, ModelConfig
from .determinism import deterministic_entropy_path
from .latent_codec import decode_hyper_latent, encode_hyper_latent, min_hyper_latent_bytes
from .para_em import build_entropy_model
from .para_jd import ParaJD
from .transforms import analysis_transform, hyper_analysis, hyper_synthesis


@dataclass(frozen=True)
class ViewStrings:
    """The entropy-coded strings of one view and the symbols they hold."""

    z: bytes
    y: bytes
    y_symbols: Tensor  # int32, 1×M×h×w: what the decoder must reproduce


class ParaHydra(CompressionModel):
    """The full codec: per-view encoder, per-view entropy model, joint decoder."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        N, M, Q = cfg.N, cfg.M, cfg.num_qualities
        self.g_a = analysis_transform(N, M)
        self.h_a = hyper_analysis(N, M)
        self.h_s = hyper_synthesis(N, M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.entropy_model = build_entropy_model(cfg)
        self.decoder = ParaJD(cfg)
        # log-gains, initialised so quality q has step 2^(q - (Q-1)/2) / 2 ... 2x apart.
        offsets = torch.arange(Q, dtype=torch.float32) - (Q - 1) / 2
        self.y_log_gain = nn.Parameter(offsets[:, None].repeat(1, M) * 0.5)
        self.z_log_gain = nn.Parameter(offsets[:, None].repeat(1, N) * 0.25)

    # -- gains ---------------------------------------------------------------------------
    def gains(self, quality: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample (y gain B×M×1×1, z gain B×N×1×1) for quality indexes ``quality`` (B,)."""
        if quality.min() < 0 or quality.max() >= self.cfg.num_qualities:
            raise ValueError(f"quality must be in 0..{self.cfg.num_qualities - 1}")
        return (
            self.y_log_gain[quality].exp()[:, :, None, None],
            self.z_log_gain[quality].exp()[:, :, None, None],
        )

    # -- training ------------------------------------------------------------------------
    def forward(self, x: Tensor, quality: Tensor, return_features: bool = False) -> dict:
        """Training / estimation pass over groups of views.

        ``x``: B×V×3×H×W in [0, 1] (H, W multiples of 64); ``quality``: (B,) indexes.
        Returns ``x_hat`` (B×V×3×H×W, unclamped) and the likelihoods of ``y`` and ``z``
        of every view (views folded into the batch).
        """
        y_hat, likelihoods = self.quantized_latents(x, quality)
        if return_features:  # the fusions' inputs too, for the alignment loss
            x_hat, features = self.decoder(y_hat, return_features=True)
            return {"x_hat": x_hat, "likelihoods": likelihoods, "features": features}
        return {"x_hat": self.decoder(y_hat), "likelihoods": likelihoods}

    def quantized_latents(self, x: Tensor, quality: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The training pass up to Para-JD: ``ŷ`` (B×V×M×h×w) and the likelihoods of ``y``
        and ``z`` (views folded into the batch), for decoding one ``ŷ`` several ways."""
        B, V = x.shape[:2]
        views = x.flatten(0, 1)
        y_gain, z_gain = self.gains(quality.repeat_interleave(V))
        y = self.g_a(views)
        z = self.h_a(y) * z_gain
        _, z_likelihoods = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians()
        z_hat = (quantize_ste(z - medians) + medians) / z_gain
        y_hat, y_likelihoods = self.entropy_model(y, self.h_s(z_hat), y_gain)
        return y_hat.unflatten(0, (B, V)), {"y": y_likelihoods, "z": z_likelihoods}

    # -- coding --------------------------------------------------------------------------
    @torch.inference_mode()
    def compress_view(self, x: Tensor, quality: int) -> ViewStrings:
        """Entropy-code ONE view, 1×3×H×W in [0, 1] (H, W multiples of 64), on its own."""
        if x.shape[0] != 1 or x.shape[-2] % PAD_MULTIPLE or x.shape[-1] % PAD_MULTIPLE:
            raise ValueError(f"compress_view takes one padded view, got {tuple(x.shape)}")
        q = torch.tensor([quality])
        y_gain, z_gain = self.gains(q)
        y = self.g_a(x.to(self._encoder_device()))
        z = self.h_a(y).cpu() * z_gain
        y = y.cpu()
        with deterministic_entropy_path():
            z_string = encode_hyper_latent(self.entropy_bottleneck, z)
            phi = self._hyper_feature(z_string, z.shape[-2:], z_gain)
            y_string, _, symbols = self.entropy_model.compress(y, phi, y_gain)
        return ViewStrings(z=z_string, y=y_string, y_symbols=symbols)

    @torch.inference_mode()
    def decompress_latent(self, z: bytes, y: bytes, padded_hw: tuple[int, int], quality: int
                          ) -> tuple[Tensor, Tensor]:
        """Entropy-decode one view's strings: returns (ŷ 1×M×h×w on the CPU, symbols)."""
        y_gain, z_gain = self.gains(torch.tensor([quality]))
        z_hw = (padded_hw[0] // PAD_MULTIPLE, padded_hw[1] // PAD_MULTIPLE)
        with deterministic_entropy_path():
            phi = self._hyper_feature(z, z_hw, z_gain)
            return self.entropy_model.decompress(y, phi, y_gain)

    @torch.inference_mode()
    def synthesize(self, y_hat: Tensor, joint: bool = True) -> Tensor:
        """Para-JD over a group: ŷ V×M×h×w → x̂ V×3×H×W clamped to [0, 1].

        ``joint=False`` decodes every view alone with the same weights (no fusion).
        """
        device = next(self.decoder.parameters()).device
        x_hat = self.decoder(y_hat.to(device).unsqueeze(0), joint=joint)[0]
        return x_hat.clamp_(0, 1).cpu()

    def min_z_bytes(self, padded_hw: tuple[int, int]) -> int:
        """Fewer bytes than the z string of any view of this padded size can have: a
        payload below it declares a larger image than it holds, and is refused unread."""
        return min_hyper_latent_bytes(
            self.entropy_bottleneck, (padded_hw[0] // PAD_MULTIPLE, padded_hw[1] // PAD_MULTIPLE))

    def _hyper_feature(self, z_string: bytes, z_hw, z_gain: Tensor) -> Tensor:
        # The whole z string is decoded and checked before h_s and Para-EM run at the
        # declared size (entropy_coder.EntropyStreamError otherwise).
        z_hat = decode_hyper_latent(self.entropy_bottleneck, z_string, tuple(z_hw))
        return self.h_s(z_hat / z_gain)

    def _encoder_device(self) -> torch.device:
        return next(self.g_a.parameters()).device

    def to_devices(self, encoder: str | torch.device = "cpu", decoder: str | torch.device = "cpu"
                   ) -> "ParaHydra":
        """Place ``g_a``/``h_a`` and Para-JD; the entropy-parameter path stays on the CPU."""
        self.g_a.to(encoder)
        self.h_a.to(encoder)
        self.decoder.to(decoder)
        return self


#: Parameters holding one log-gain vector per quality level (Q×channels).
GAIN_PARAMETERS = ("y_log_gain", "z_log_gain")


def log_gains_at(lambdas: Sequence[float], log_gains: Tensor, new_lambdas: Sequence[float]) -> Tensor:
    """Log-gains (Q×C) trained at ``lambdas`` (ascending), carried to ``new_lambdas``: per channel,
    linear in log λ between the two nearest trained levels, extended linearly past the ends.
    A λ that was trained keeps its gains exactly."""
    if len(lambdas) != len(log_gains):
        raise ValueError(f"{len(lambdas)} λ for {len(log_gains)} gain vectors")
    if len(lambdas) == 1:
        return log_gains.expand(len(new_lambdas), -1).clone()
    logs = [math.log(lam) for lam in lambdas]
    rows = []
    for target in map(math.log, new_lambdas):
        upper = min(max(1, bisect.bisect_left(logs, target)), len(logs) - 1)  # the segment holding it
        weight = (target - logs[upper - 1]) / (logs[upper] - logs[upper - 1])
        rows.append(torch.lerp(log_gains[upper - 1], log_gains[upper], weight))
    return torch.stack(rows)

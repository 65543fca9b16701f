"""Para-EM, the Parallax Entropy Model (ParaHydra §3.5; model-spec §4, §5, §7).

Para-EM codes one view's latent ``y`` (``B×M×h×w``) given the hyperprior feature
``Φ = h_s(ẑ)`` (``B×2M×h×w``). It never sees another view, so encoding stays
distributed. ``y`` is cut into ``K`` channel slices of ``c = M/K`` channels and every
slice into a checkerboard (anchors first, then non-anchors)::

    for k in 0..K-1:
        P_k   = PMIFM_k(main=ŷ^(k-1), sides=ŷ^(0..k-2))       PCCM (k ≥ 1; P_1 = ŷ^(0))
        C_k   = Head_k(P_k)                                   channel context, 4c
        σa,μa = EP^a_k([C_k, Φ])            (Φ alone at k = 0)
        code the anchors                  → ŷa               [LRP: ŷa += ...]
        L_k   = LocalCtx_k(ŷa)                                5×5 checkerboard attention, 2c
        G_k   = PGCM_k(P_k, ŷa)                               linear attention, 2c (k ≥ 1)
        σn,μn = EP^n_k([L_k, G_k, C_k, Φ])  ([L_0, Φ] at k = 0)
        code the non-anchors              → ŷ^(k)            [LRP: ŷ^(k) += ...]

One loop (:meth:`SliceCheckerboardEntropyModel._run`) serves training, compression
and decompression; only the *coder* that turns ``(σ, μ)`` of a part into ``ŷ`` of
that part differs (:class:`_Estimator`, :class:`_Encoder`, :class:`_Decoder`, in
:mod:`~parahydra_ros.model.latent_codec`, shared with every variant). So
the three cannot drift apart, and the encoder never feeds ``y`` into a context,
only ``ŷ`` exactly as the decoder will have it (model-spec §4.6 invariants 1–2).

Quality levels (gain, after Cui et al. 2021 "Asymmetric gained deep image
compression", adapted). The caller passes a per-channel gain ``g`` (``B×M×1×1``,
> 0). The entropy model predicts ``(σ, μ)`` in the *normalised* domain from contexts
of the normalised ``ŷ``; coding happens in the gained domain::

    symbol      s = round((y − μ)·g)
    ŷ           = s / g + μ                      (1/g is a per-channel quantisation step)
    likelihood  = N(σ·g) ∗ U(−½, ½) at (y − μ)·g  (+ uniform noise when training,
                                                    rounded in eval)
    CDF index   = index of σ·g in get_scale_table()

Features fed forward during training use ``ste_round((y − μ)·g)/g + μ``, part by
part (anchors first, as MLIC++'s ``forward``). With ``g ≡ 1`` this is exactly
model-spec §4.6. One set of entropy-model weights thus serves every quality: only
the gain vector changes. The likelihood is evaluated on the centred, gained value
``(y − μ)·g`` with scale ``σ·g`` and no mean — the same density as
``GaussianConditional(y·g, σ·g, μ·g)``, but in eval mode it is then the likelihood of
exactly the symbol that ``compress`` writes (no second rounding of ``y·g − μ·g``).
LRP (optional, §4.7) adds ``0.5·tanh(·)/g``: its correction stays within the
quantisation bin of the current quality (``/g`` is our adaptation; ``g ≡ 1`` is MLIC++).

Bitstream (model-spec §5): ONE ANS string per view (``model.entropy_coder``:
CompressAI's CDF tables in a memory-safe coder) with the parts in decode order — slice
0 anchors, slice 0 non-anchors, slice 1 anchors, … — and, inside a part, the symbols
of each CDF index in C-order of the squeezed ``c×h×(w/2)`` tensor. ``h`` and ``w`` must
be even. Symbols beyond a CDF table are escape-coded, so any value round-trips.

Determinism: compress and decompress run the same float32 ops on the same shapes
and derive the CDF index from ``σ·g`` with exact comparisons against the scale table.
The result is bit-exact when both run the entropy path on the same kind of CPU with
one thread (``model.determinism.deterministic_entropy_path``, applied by the
caller). Nothing here draws random numbers at coding time or depends on other
samples of a batch.

Variants (``cfg.entropy_model``, model-spec §7), all with the interface of
:class:`LatentEntropyModel`:

=================  ===========================================================
``para``           the above (default)
``para_wo_pccm``   ``C_k = ChannelContext_MLIC(concat ŷ^(<k))``; PGCM still gets ``P_k``
``para_wo_pgcm``   PGCM's query/key from ``ŷ^(k−1)`` (MLIC++ ``LinearGlobalIntraContext``)
``mlicpp``         MLIC++'s entropy model: ChannelContext, LinearGlobalInterContext,
                   LinearGlobalIntraContext, LocalContext and LRP (always on)
``ldmic_ckbd``     LDMIC-fast checkerboard over all M channels (``model.ldmic_em``)
=================  ===========================================================

``cfg.lrp=True`` adds LRP to the ``para*`` variants.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .checkerboard import (
    ckbd_anchor,
    ckbd_nonanchor,
    squeeze_anchor,
    squeeze_nonanchor,
    unsqueeze_anchor,
    unsqueeze_nonanchor,
)
from .configs import ModelConfig
from .contexts import (
    ChannelContextHead,
    EntropyParameters,
    GlobalInterContext,
    GlobalIntraContext,
    LatentResidualPrediction,
    LocalContext,
)
from .latent_codec import LatentEntropyModel, _Coder, scale_indexes
from .pmifm import PMIFM

__all__ = [
    "LatentEntropyModel",
    "SliceCheckerboardEntropyModel",
    "build_entropy_model",
    "scale_indexes",
]


class SliceCheckerboardEntropyModel(LatentEntropyModel):
    """Channel slices × checkerboard: Para-EM and its MLIC++-derived variants.

    Args:
        cfg: widths (``M``, ``slices``, ``ep_hidden``, ``channel_ctx_hidden``,
            ``lrp_hidden``, ``local_window``, ``local_heads``, ``global_heads``).
        channel_context: ``"pccm"`` (head on ``P_k``) or ``"concat"`` (MLIC++
            ChannelContext on the concatenated earlier slices).
        global_condition: what PGCM's query/key read: ``"pccm"`` (``P_k``) or
            ``"previous"`` (``ŷ^{(k−1)}``, MLIC++).
        inter_context: add MLIC++'s LinearGlobalInterContext (2c, to both EPs).
        lrp: latent residual prediction after each part.

    ``P_k`` (and its PMIFMs) exists only if some module reads it. For ``k = 1`` there
    are no side slices and ``P_1 = ŷ^{(0)}`` (model-spec §2.1 rule 6), so no PMIFM is
    instantiated for ``k ≤ 1`` (it would hold parameters that never get a gradient).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        channel_context: str = "pccm",
        global_condition: str = "pccm",
        inter_context: bool = False,
        lrp: bool = False,
    ):
        super().__init__()
        if channel_context not in ("pccm", "concat"):
            raise ValueError(f"channel_context {channel_context!r} not in ('pccm', 'concat')")
        if global_condition not in ("pccm", "previous"):
            raise ValueError(f"global_condition {global_condition!r} not in ('pccm', 'previous')")
        self.cfg = cfg
        self.M, self.K, self.c = cfg.M, cfg.slices, cfg.slice_channels
        self.channel_context, self.global_condition = channel_context, global_condition
        M, K, c = self.M, self.K, self.c
        uses_p = "pccm" in (channel_context, global_condition)

        def per_slice(make, start: int = 1) -> nn.ModuleList:
            return nn.ModuleList(make(k) if k >= start else nn.Identity() for k in range(K))

        self.pccm = per_slice(lambda k: PMIFM(c, cfg), start=2) if uses_p else None
        head_in = (lambda k: c) if channel_context == "pccm" else (lambda k: k * c)
        self.channel_heads = per_slice(
            lambda k: ChannelContextHead(head_in(k), 4 * c, cfg.channel_ctx_hidden)
        )
        self.inter_contexts = per_slice(lambda k: GlobalInterContext(k * c, 2 * c)) if inter_context else None
        self.global_contexts = per_slice(lambda k: GlobalIntraContext(c, cfg.global_heads))
        self.local_contexts = nn.ModuleList(
            LocalContext(c, cfg.local_window, cfg.local_heads) for _ in range(K)
        )
        shared = 4 * c + (2 * c if inter_context else 0)  # channels fed to both EPs (k ≥ 1)
        self.ep_anchor = nn.ModuleList(
            EntropyParameters(2 * M + (shared if k else 0), 2 * c, cfg.ep_hidden) for k in range(K)
        )
        self.ep_nonanchor = nn.ModuleList(
            EntropyParameters(2 * M + 2 * c + (2 * c + shared if k else 0), 2 * c, cfg.ep_hidden)
            for k in range(K)
        )
        if lrp:
            self.lrp_anchor = nn.ModuleList(
                LatentResidualPrediction(M + (k + 1) * c, c, cfg.lrp_hidden) for k in range(K)
            )
            self.lrp_nonanchor = nn.ModuleList(
                LatentResidualPrediction(M + (k + 1) * c, c, cfg.lrp_hidden) for k in range(K)
            )
        else:
            self.lrp_anchor = self.lrp_nonanchor = None

    @property
    def latent_channels(self) -> int:
        return self.M

    def _parallax_channel_feature(self, k: int, previous: Sequence[Tensor]) -> Tensor:
        """``P_k = PMIFM_k(ŷ^{(k−1)}, {ŷ^{(0..k−2)}})`` (``P_1 = ŷ^{(0)}``)."""
        if k == 1:
            return previous[0]
        return self.pccm[k](previous[k - 1], previous[: k - 1])

    def _run(self, phi: Tensor, gain: Tensor, coder: _Coder) -> Tensor:
        c = self.c
        phi_a, phi_n = squeeze_anchor(phi), squeeze_nonanchor(phi)
        phi_mean = phi.chunk(2, 1)[1] if self.lrp_anchor is not None else None
        previous: list[Tensor] = []
        for k in range(self.K):
            channels = slice(k * c, (k + 1) * c)
            g = gain[:, channels]
            shared: list[Tensor] = []  # full-size context maps fed to both EPs
            condition = None
            if k:
                p = self._parallax_channel_feature(k, previous) if self.pccm is not None else None
                earlier = torch.cat(previous, 1) if len(previous) > 1 else previous[0]
                if self.inter_contexts is not None:
                    shared.append(self.inter_contexts[k](earlier))
                shared.append(self.channel_heads[k](p if self.channel_context == "pccm" else earlier))
                condition = p if self.global_condition == "pccm" else previous[-1]

            # Anchors: channel context and Φ only.
            params = self.ep_anchor[k](torch.cat([squeeze_anchor(f) for f in shared] + [phi_a], 1))
            scale, mean = params.chunk(2, 1)
            y_anchor = unsqueeze_anchor(coder.code(channels, True, scale, mean, g))
            if self.lrp_anchor is not None:
                residual = self.lrp_anchor[k](torch.cat([phi_mean, *previous, y_anchor], 1))
                y_anchor = y_anchor + ckbd_anchor(residual) / g

            # Non-anchors: local and global contexts of the decoded anchors as well.
            features = [self.local_contexts[k](y_anchor)]
            if k:
                features.append(squeeze_nonanchor(self.global_contexts[k](condition, y_anchor)))
            features += [squeeze_nonanchor(f) for f in shared] + [phi_n]
            scale, mean = self.ep_nonanchor[k](torch.cat(features, 1)).chunk(2, 1)
            y_slice = y_anchor + unsqueeze_nonanchor(coder.code(channels, False, scale, mean, g))
            if self.lrp_nonanchor is not None:
                residual = self.lrp_nonanchor[k](torch.cat([phi_mean, *previous, y_slice], 1))
                y_slice = y_slice + ckbd_nonanchor(residual) / g
            previous.append(y_slice)
        return torch.cat(previous, 1)


def build_entropy_model(cfg: ModelConfig) -> LatentEntropyModel:
    """The latent entropy model selected by ``cfg.entropy_model`` (model-spec §7)."""
    kind = cfg.entropy_model
    if kind == "para":
        return SliceCheckerboardEntropyModel(cfg, lrp=cfg.lrp)
    if kind == "para_wo_pccm":
        return SliceCheckerboardEntropyModel(cfg, channel_context="concat", lrp=cfg.lrp)
    if kind == "para_wo_pgcm":
        return SliceCheckerboardEntropyModel(cfg, global_condition="previous", lrp=cfg.lrp)
    if kind == "mlicpp":
        return SliceCheckerboardEntropyModel(
            cfg, channel_context="concat", global_condition="previous", inter_context=True, lrp=True
        )
    if kind == "ldmic_ckbd":
        from .ldmic_em import LdmicCheckerboardEntropyModel

        return LdmicCheckerboardEntropyModel(cfg)
    raise ValueError(f"unknown entropy model {kind!r}")

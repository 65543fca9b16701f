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
that part differs (:class:`_Estimator`, :class:`_Encoder`, :class:`_Decoder`). So
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

Bitstream (model-spec §5): ONE rANS string per view (CompressAI
``BufferedRansEncoder``, flushed once) with the symbols in decode order — slice 0
anchors, slice 0 non-anchors, slice 1 anchors, … — and, inside a part, in C-order of
the squeezed ``c×h×(w/2)`` tensor. ``h`` and ``w`` must be even. Symbols beyond a CDF
table are escape-coded by the rANS coder itself (bypass), so any value round-trips.

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
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import GaussianConditional
from compressai.models.base import get_scale_table
from compressai.ops import quantize_ste
from torch import Tensor, nn

from .checkerboard import (
    ckbd_anchor,
    ckbd_nonanchor,
    merge,
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
from .pmifm import PMIFM

__all__ = [
    "LatentEntropyModel",
    "SliceCheckerboardEntropyModel",
    "build_entropy_model",
    "scale_indexes",
]


def scale_indexes(gaussian_conditional: GaussianConditional, scales: Tensor) -> Tensor:
    """CDF indexes of ``scales``: identical to ``GaussianConditional.build_indexes``.

    ``build_indexes`` lower-bounds the scales and counts the table entries ``≥`` the
    scale with one comparison per table level; ``bucketize`` counts the entries ``<``
    the scale in one pass. Both are exact comparisons of the same float32 values, so
    the indexes are the same (tested), at a fraction of the time.
    """
    table = gaussian_conditional.scale_table
    if table.numel() == 0:
        raise RuntimeError("the scale table is empty: call update() before coding")
    scales = gaussian_conditional.lower_bound_scale(scales)
    return torch.bucketize(scales, table[:-1].to(scales.dtype)).to(torch.int32)


class _Coder:
    """Turns the ``(σ, μ)`` of one part into ``ŷ`` of that part (squeezed, normalised)."""

    def code(self, channels: slice, anchor: bool, scale: Tensor, mean: Tensor, gain: Tensor) -> Tensor:
        raise NotImplementedError


class _Estimator(_Coder):
    """Training / evaluation estimate: likelihoods with noise (train) or rounding (eval)."""

    def __init__(self, y: Tensor, gaussian_conditional: GaussianConditional):
        self.parts = (squeeze_anchor(y), squeeze_nonanchor(y))  # anchor, non-anchor
        self.gc = gaussian_conditional
        self.likelihoods: tuple[list[Tensor], list[Tensor]] = ([], [])

    def code(self, channels, anchor, scale, mean, gain):
        y = self.parts[0 if anchor else 1][:, channels]
        centred = (y - mean) * gain
        _, likelihood = self.gc(centred, scale * gain)
        self.likelihoods[0 if anchor else 1].append(likelihood)
        return quantize_ste(centred) / gain + mean

    def likelihood_map(self) -> Tensor:
        return merge(torch.cat(self.likelihoods[0], 1), torch.cat(self.likelihoods[1], 1))


class _Tables:
    """The GaussianConditional's CDF tables as Python lists (trimmed to their lengths)."""

    def __init__(self, gc: GaussianConditional):
        lengths = gc.cdf_length.reshape(-1).int().tolist()
        self.cdfs = [row[:n] for row, n in zip(gc.quantized_cdf.tolist(), lengths)]
        self.lengths = lengths
        self.offsets = gc.offset.reshape(-1).int().tolist()


class _Encoder(_Coder):
    """Rounds, records symbols and CDF indexes; one rANS string at :meth:`flush`."""

    def __init__(self, y: Tensor, gaussian_conditional: GaussianConditional, tables: _Tables):
        self.parts = (squeeze_anchor(y), squeeze_nonanchor(y))
        self.gc, self.tables = gaussian_conditional, tables
        self.symbols: tuple[list[Tensor], list[Tensor]] = ([], [])
        self.stream: list[tuple[Tensor, Tensor]] = []  # (symbols, indexes) in coding order

    def code(self, channels, anchor, scale, mean, gain):
        y = self.parts[0 if anchor else 1][:, channels]
        symbols = torch.round((y - mean) * gain).to(torch.int32)
        self.stream.append((symbols.reshape(-1), scale_indexes(self.gc, scale * gain).reshape(-1)))
        self.symbols[0 if anchor else 1].append(symbols)
        return symbols.to(mean.dtype) / gain + mean

    def flush(self) -> bytes:
        encoder = BufferedRansEncoder()
        encoder.encode_with_indexes(
            torch.cat([s for s, _ in self.stream]).tolist(),
            torch.cat([i for _, i in self.stream]).tolist(),
            self.tables.cdfs, self.tables.lengths, self.tables.offsets,
        )
        return encoder.flush()

    def symbol_map(self) -> Tensor:
        return merge(torch.cat(self.symbols[0], 1), torch.cat(self.symbols[1], 1))


class _Decoder(_Coder):
    """Reads the symbols of each part from the rANS string, in the encoder's order."""

    def __init__(self, data: bytes, gaussian_conditional: GaussianConditional, tables: _Tables):
        self.decoder = RansDecoder()
        self.decoder.set_stream(data)
        self.gc, self.tables = gaussian_conditional, tables
        self.symbols: tuple[list[Tensor], list[Tensor]] = ([], [])

    def code(self, channels, anchor, scale, mean, gain):
        indexes = scale_indexes(self.gc, scale * gain)
        values = self.decoder.decode_stream(
            indexes.reshape(-1).tolist(), self.tables.cdfs, self.tables.lengths, self.tables.offsets
        )
        symbols = torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)
        self.symbols[0 if anchor else 1].append(symbols)
        return symbols.to(mean.dtype) / gain + mean

    def symbol_map(self) -> Tensor:
        return merge(torch.cat(self.symbols[0], 1), torch.cat(self.symbols[1], 1))


class LatentEntropyModel(nn.Module):
    """The interface Para-EM and every variant share (a CompressAI-style latent codec).

    Subclasses implement :meth:`_run`, the coding loop, in terms of a coder; this class
    provides the three verbs on top of it and the scale table.

    * ``forward(y, Φ, g) -> (ŷ, likelihoods)``: training / estimation (``B`` any);
      ``ŷ`` in the normalised domain, likelihoods ``B×M×h×w``.
    * ``compress(y, Φ, g) -> (string, ŷ, symbols)``: ``B = 1``; one rANS string.
    * ``decompress(string, Φ, g) -> (ŷ, symbols)``: reproduces ``compress`` bit-exactly.
    * ``update(force)``: the GaussianConditional's scale table (``get_scale_table()``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.gaussian_conditional = GaussianConditional(None)
        self._tables: tuple[list, _Tables] | None = None

    # -- to implement -------------------------------------------------------------------
    def _run(self, phi: Tensor, gain: Tensor, coder: _Coder) -> Tensor:
        """The coding loop: returns ``ŷ`` (``B×M×h×w``), calling ``coder.code`` per part."""
        raise NotImplementedError

    # -- the three verbs -----------------------------------------------------------------
    def forward(self, y: Tensor, phi: Tensor, gain: Tensor) -> tuple[Tensor, Tensor]:
        self._check(y, phi, gain)
        coder = _Estimator(y, self.gaussian_conditional)
        y_hat = self._run(phi, gain, coder)
        return y_hat, coder.likelihood_map()

    def compress(self, y: Tensor, phi: Tensor, gain: Tensor) -> tuple[bytes, Tensor, Tensor]:
        self._check(y, phi, gain, single=True)
        coder = _Encoder(y, self.gaussian_conditional, self._cdf_tables())
        y_hat = self._run(phi, gain, coder)
        return coder.flush(), y_hat, coder.symbol_map()

    def decompress(self, data: bytes, phi: Tensor, gain: Tensor) -> tuple[Tensor, Tensor]:
        self._check(None, phi, gain, single=True)
        coder = _Decoder(data, self.gaussian_conditional, self._cdf_tables())
        y_hat = self._run(phi, gain, coder)
        return y_hat, coder.symbol_map()

    def update(self, force: bool = False) -> bool:
        """Build the GaussianConditional's CDF tables from ``get_scale_table()``."""
        updated = self.gaussian_conditional.update_scale_table(get_scale_table(), force=force)
        self._tables = None
        return updated

    # -- helpers -------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        raise NotImplementedError

    def _check(self, y: Tensor | None, phi: Tensor, gain: Tensor, single: bool = False) -> None:
        m = self.latent_channels
        b, _, h, w = phi.shape
        if phi.shape[1] != 2 * m:
            raise ValueError(f"hyper feature has {phi.shape[1]} channels, expected 2M = {2 * m}")
        if y is not None and y.shape != (b, m, h, w):
            raise ValueError(f"latent shape {tuple(y.shape)} does not match hyper feature {tuple(phi.shape)}")
        if gain.shape not in ((b, m, 1, 1), (1, m, 1, 1)):
            raise ValueError(f"gain must be {b}×{m}×1×1, got {tuple(gain.shape)}")
        if h % 2 or w % 2:
            raise ValueError(f"latent size {h}×{w} must be even (pad images to multiples of 64)")
        if single and b != 1:
            raise ValueError(f"compress/decompress code one view at a time (batch 1), got {b}")

    def _cdf_tables(self) -> _Tables:
        gc = self.gaussian_conditional
        if gc.quantized_cdf.numel() == 0:
            raise RuntimeError("entropy model not updated: call update() before compress/decompress")
        # Rebuild when a buffer is replaced (update, load_state_dict) or written in place.
        current = [(t, t._version) for t in (gc.quantized_cdf, gc.cdf_length, gc.offset)]
        cached = self._tables[0] if self._tables is not None else None
        if cached is None or any(a is not b or va != vb for (a, va), (b, vb) in zip(cached, current)):
            self._tables = (current, _Tables(gc))
        return self._tables[1]


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

"""The latent-codec machinery every entropy model of this package shares (model-spec §5).

A latent entropy model (Para-EM, its ablation variants, LDMIC's checkerboard) is ONE
coding loop, ``LatentEntropyModel._run``, written against a *coder* that turns the
``(σ, μ)`` of one part of the latent into ``ŷ`` of that part. The three coders make
the three verbs of a CompressAI latent codec from that one loop:

* :class:`_Estimator` (``forward``): likelihoods, with noise (training) or rounding;
* :class:`_Encoder` (``compress``): symbols and CDF indexes, one ANS string per view;
* :class:`_Decoder` (``decompress``): the symbols read back in the encoder's order.

The string of a view holds its parts in decode order (:mod:`.entropy_coder`, memory-safe:
a short or forged string is reported, never read past its end).

Quality gain, symbol and CDF-index conventions are described in
:mod:`parahydra_ros.model.para_em`. This module is shared by ``para_em`` and
``ldmic_em``, so neither imports the other's internals.
"""
from __future__ import annotations

import numpy as np
import torch
from compressai.entropy_models import GaussianConditional
from compressai.models.base import get_scale_table
from compressai.ops import quantize_ste
from torch import Tensor, nn

from .checkerboard import merge, squeeze_anchor, squeeze_nonanchor
from .entropy_coder import CdfTables, SymbolDecoder, SymbolEncoder

__all__ = ["LatentEntropyModel", "decode_hyper_latent", "encode_hyper_latent", "min_hyper_latent_bytes",
           "scale_indexes"]


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


def cdf_tables(entropy_model: nn.Module) -> CdfTables:
    """The coder's tables of a CompressAI ``EntropyBottleneck`` / ``GaussianConditional``,
    built once and rebuilt when a CDF buffer is replaced (``update``, ``load_state_dict``)
    or written in place."""
    buffers = (entropy_model._quantized_cdf, entropy_model._cdf_length, entropy_model._offset)
    if buffers[0].numel() == 0:
        raise RuntimeError("entropy model not updated: call update() before compress/decompress")
    key = [(t, t._version) for t in buffers]
    cached = getattr(entropy_model, "_parahydra_tables", None)
    if cached is None or any(a is not b or va != vb for (a, va), (b, vb) in zip(cached[0], key)):
        cached = (key, CdfTables(*(t.numpy() for t in buffers)))
        entropy_model._parahydra_tables = cached
    return cached[1]


def encode_hyper_latent(entropy_bottleneck: nn.Module, z: Tensor) -> bytes:
    """The ANS string of ``z`` (1×N×h×w): ``round(z − median)`` per channel, one part
    with channel ``c`` coded by the bottleneck's table ``c`` (as CompressAI's
    ``EntropyBottleneck.compress``, in the memory-safe coder)."""
    medians = entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    symbols = torch.round(z - medians).to(torch.int32)
    stream = SymbolEncoder(cdf_tables(entropy_bottleneck))
    stream.add(symbols.numpy(), _channel_indexes(z.shape))
    return stream.finish()


def decode_hyper_latent(entropy_bottleneck: nn.Module, data: bytes, hw: tuple[int, int]) -> Tensor:
    """``ẑ`` (1×N×h×w) from its string; raises ``EntropyStreamError`` unless the string
    holds exactly the symbols of an ``h×w`` hyper-latent."""
    medians = entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    stream = SymbolDecoder(data, cdf_tables(entropy_bottleneck), "z string")
    symbols = stream.decode(_channel_indexes((1, medians.shape[1], *hw)))
    stream.finish()
    return torch.from_numpy(symbols).to(medians.dtype) + medians


def min_hyper_latent_bytes(entropy_bottleneck: nn.Module, hw: tuple[int, int]) -> int:
    """Fewer bytes than any z string of an ``h×w`` hyper-latent can have (the bottleneck's
    cheapest symbol of each channel, at every position; 0 if the model allows free z)."""
    tables = cdf_tables(entropy_bottleneck)
    return int(tables.min_bits([hw[0] * hw[1]] * len(tables)) // 8)


def _channel_indexes(shape) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[1], dtype=np.int64)[None, :, None, None], tuple(shape))


class _Encoder(_Coder):
    """Rounds, records symbols and CDF indexes; one ANS string at :meth:`flush`."""

    def __init__(self, y: Tensor, gaussian_conditional: GaussianConditional, tables: CdfTables):
        self.parts = (squeeze_anchor(y), squeeze_nonanchor(y))
        self.gc = gaussian_conditional
        self.symbols: tuple[list[Tensor], list[Tensor]] = ([], [])
        self.stream = SymbolEncoder(tables)  # the parts in coding order

    def code(self, channels, anchor, scale, mean, gain):
        y = self.parts[0 if anchor else 1][:, channels]
        symbols = torch.round((y - mean) * gain).to(torch.int32)
        self.stream.add(symbols.numpy(), scale_indexes(self.gc, scale * gain).numpy())
        self.symbols[0 if anchor else 1].append(symbols)
        return symbols.to(mean.dtype) / gain + mean

    def flush(self) -> bytes:
        return self.stream.finish()

    def symbol_map(self) -> Tensor:
        return merge(torch.cat(self.symbols[0], 1), torch.cat(self.symbols[1], 1))


class _Decoder(_Coder):
    """Reads the symbols of each part from the ANS string, in the encoder's order."""

    def __init__(self, data: bytes, gaussian_conditional: GaussianConditional, tables: CdfTables):
        self.stream = SymbolDecoder(data, tables, "y string")
        self.gc = gaussian_conditional
        self.symbols: tuple[list[Tensor], list[Tensor]] = ([], [])

    def code(self, channels, anchor, scale, mean, gain):
        indexes = scale_indexes(self.gc, scale * gain)
        symbols = torch.from_numpy(self.stream.decode(indexes.numpy()))
        self.symbols[0 if anchor else 1].append(symbols)
        return symbols.to(mean.dtype) / gain + mean

    def finish(self) -> None:
        self.stream.finish()

    def symbol_map(self) -> Tensor:
        return merge(torch.cat(self.symbols[0], 1), torch.cat(self.symbols[1], 1))


class LatentEntropyModel(nn.Module):
    """The interface Para-EM and every variant share (a CompressAI-style latent codec).

    Subclasses implement :meth:`_run`, the coding loop, in terms of a coder; this class
    provides the three verbs on top of it and the scale table.

    * ``forward(y, Φ, g) -> (ŷ, likelihoods)``: training / estimation (``B`` any);
      ``ŷ`` in the normalised domain, likelihoods ``B×M×h×w``.
    * ``compress(y, Φ, g) -> (string, ŷ, symbols)``: ``B = 1``; one ANS string.
    * ``decompress(string, Φ, g) -> (ŷ, symbols)``: reproduces ``compress`` bit-exactly.
    * ``update(force)``: the GaussianConditional's scale table (``get_scale_table()``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.gaussian_conditional = GaussianConditional(None)

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
        coder.finish()
        return y_hat, coder.symbol_map()

    def update(self, force: bool = False) -> bool:
        """Build the GaussianConditional's CDF tables from ``get_scale_table()``."""
        return self.gaussian_conditional.update_scale_table(get_scale_table(), force=force)

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

    def _cdf_tables(self) -> CdfTables:
        return cdf_tables(self.gaussian_conditional)

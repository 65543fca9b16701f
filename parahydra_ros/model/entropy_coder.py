"""Memory-safe entropy coding of integer symbols with CompressAI's CDF tables.

CompressAI's rANS decoder (``compressai.ans``, C++) has no bounds checks: a string
shorter than its symbols need is read past its end, and a payload whose header
declares a larger image than it was coded at crashes the decoding process. Here the
same tables drive the ANS coder of ``constriction`` (Rust, bounds-checked: bad data
decodes to wrong symbols or raises, it never reads outside its input), so a decoder
only ever reads the bytes it was given, whatever a header says.

One string (container format 2) is a little-endian sequence of 32-bit words of one
``constriction.stream.stack.AnsCoder``. Its symbols, in decode order::

    part 1, part 2, … part P, sentinel

where a *part* is what the caller codes at once (the z latent; each checkerboard part
of each Para-EM slice) and holds, for each CDF index ``j`` used in that part in
ascending order, the part's symbols with index ``j`` in C-order (one categorical
model per call: coding stays vectorised), followed by the escape values of those
symbols. A symbol ``s`` with ``v = s − offset[j]`` outside ``0 … L_j − 3`` is coded as
the table's escape symbol ``L_j − 2`` and its distance beyond the table, ``u = 2d + b``
(``d ≥ 0`` how far below (``b = 1``) or above (``b = 0``) the table's range), as its bit
length ``n`` (uniform over 0…33), then the ``n − 1`` bits under its leading one
(uniform, ≤ 16 bits a symbol) — an escape just past a table costs ~7 bits, as with
CompressAI's bypass coding, and any int32 round-trips. The decoder learns every index of a part before decoding it (the indexes of
a part depend only on earlier parts), so it can split the part the same way.

The *sentinel* (two fixed 16-bit symbols, encoded first and so decoded last) makes
the stream self-checking: a coder that holds it has ≥ 35 valid bits, and decoding
never increases the valid bits, so (1) after every part of a good string at least
:data:`SENTINEL_BITS` valid bits remain — fewer means the string ran out of data
before the declared latent was complete, and decoding stops at that part instead of
running the entropy model over the whole declared size; (2) at the end the sentinel
must read back and the coder must be empty, so a string has exactly one meaning
(no words may be added, dropped or left over).

Probabilities: a table's quantised CDF (16-bit, CompressAI ``update()``) gives the
pmf ``diff(cdf) / 2¹⁶``, which constriction's ``Categorical(perfect=False)`` model
re-quantises to its own 24-bit fixed point with integer and IEEE arithmetic only, the
same on every machine. The code length of a part is then at least the sum of
``−log2 max pmf`` of its symbols' tables (:meth:`CdfTables.min_bits`): the hyper-latent
``z`` of a trained model costs bits per position whatever its value, which bounds the
bytes a z string of a declared size must have.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import constriction
import numpy as np

# constriction's extension exposes its modules as attributes, not importable submodules.
AnsCoder = constriction.stream.stack.AnsCoder
Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform

__all__ = ["CdfTables", "EntropyStreamError", "SymbolDecoder", "SymbolEncoder", "SENTINEL_BITS"]

#: Precision of CompressAI's quantised CDFs (``EntropyModel.entropy_coder_precision``).
CDF_PRECISION = 16
_SENTINEL = np.array([0xC0DE, 0x0A5E], dtype=np.int32)
#: Valid bits of a coder that holds only the sentinel (``AnsCoder.num_valid_bits``).
SENTINEL_BITS = 35
_UNIFORM16 = Uniform(1 << 16)
_ESCAPE_LENGTH = Uniform(34)  # bit length of u < 2**33
_UNIFORM = Uniform()  # a size per symbol
#: Share of the measured code length that :meth:`CdfTables.min_bits` promises at most
#: (constriction's re-quantisation and ANS rounding cost ≤ 2 % less, measured).
_MIN_BITS_MARGIN = 0.9


class EntropyStreamError(ValueError):
    """An entropy-coded string that does not decode to the declared latent."""


class CdfTables:
    """The categorical models of a CompressAI entropy model's quantised CDF tables.

    ``quantized_cdf`` (T×Lmax), ``cdf_length`` (T) and ``offset`` (T) are the buffers
    ``update()`` fills (``EntropyBottleneck``: one table per channel;
    ``GaussianConditional``: one per scale-table level).
    """

    def __init__(self, quantized_cdf, cdf_length, offset):
        cdf = np.asarray(quantized_cdf, dtype=np.int64)
        lengths = np.asarray(cdf_length, dtype=np.int64).reshape(-1)
        self.offsets = np.asarray(offset, dtype=np.int64).reshape(-1)
        if cdf.ndim != 2 or not len(lengths) == len(self.offsets) == len(cdf) or len(cdf) == 0:
            raise ValueError("CDF tables are missing or inconsistent: call update() first")
        self.models: list[Categorical] = []
        self.escape = lengths - 2  # the escape symbol of each table; values 0 … escape − 1
        costs = []
        for row, length in zip(cdf, lengths):
            pmf = np.diff(row[:length])
            if length < 3 or (pmf <= 0).any() or row[length - 1] != 1 << CDF_PRECISION:
                raise ValueError("a quantised CDF table is not a valid distribution")
            self.models.append(Categorical(pmf / float(1 << CDF_PRECISION), perfect=False))
            costs.append(CDF_PRECISION - math.log2(int(pmf.max())))
        self.min_cost = np.array(costs)  # bits, the cheapest symbol of each table

    def __len__(self) -> int:
        return len(self.models)

    def min_bits(self, counts: Sequence[int] | np.ndarray) -> float:
        """A lower bound on the bits of a string holding ``counts[j]`` symbols of table ``j``."""
        return _MIN_BITS_MARGIN * float(np.dot(np.asarray(counts, dtype=np.float64), self.min_cost))

    def groups(self, indexes: np.ndarray):
        """The positions of a part grouped by table: ``[(table, positions in C-order)]``."""
        flat = np.asarray(indexes).reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self.models)):
            raise EntropyStreamError(f"CDF index outside 0..{len(self.models) - 1}")
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=len(self.models))
        bounds = np.concatenate(([0], np.cumsum(counts)))
        return [(j, order[bounds[j]:bounds[j + 1]]) for j in np.flatnonzero(counts)]


class SymbolEncoder:
    """Collects the parts of one string in decode order; :meth:`finish` codes them."""

    def __init__(self, tables: CdfTables):
        self.tables = tables
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, symbols, indexes) -> None:
        """Append one part: int symbols and their CDF indexes (same shape)."""
        symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
        indexes = np.asarray(indexes, dtype=np.int64).reshape(-1)
        if symbols.shape != indexes.shape:
            raise ValueError(f"{symbols.size} symbols but {indexes.size} indexes")
        self.parts.append((symbols, indexes))

    def finish(self) -> bytes:
        coder = AnsCoder()
        coder.encode_reverse(_SENTINEL, _UNIFORM16)  # a stack: encoded first, decoded last
        t = self.tables
        for symbols, indexes in reversed(self.parts):
            for j, positions in reversed(t.groups(indexes)):
                values = symbols[positions] - t.offsets[j]
                escaped = (values < 0) | (values >= t.escape[j])
                if escaped.any():
                    _encode_escapes(coder, values[escaped], int(t.escape[j]))
                    values[escaped] = t.escape[j]
                coder.encode_reverse(values.astype(np.int32), t.models[j])
        return coder.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    """Reads the parts of one string back, checking that the string holds them."""

    def __init__(self, data: bytes, tables: CdfTables, label: str = "string"):
        self.tables, self.label = tables, label
        if len(data) % 4:
            raise EntropyStreamError(f"{label} of {len(data)} bytes is not whole 32-bit words")
        try:
            self.coder = AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        except ValueError as error:  # e.g. a last word of zero: never written by an encoder
            raise EntropyStreamError(f"{label} is not an ANS stream: {error}") from None
        self._check_left()

    def decode(self, indexes) -> np.ndarray:
        """The int32 symbols of the next part, shaped like ``indexes``."""
        indexes = np.asarray(indexes)
        t = self.tables
        out = np.empty(indexes.size, dtype=np.int32)
        for j, positions in t.groups(indexes):
            values = self.coder.decode(t.models[j], len(positions)).astype(np.int64)
            escaped = values == t.escape[j]
            count = int(escaped.sum())
            if count:
                values[escaped] = _decode_escapes(self.coder, count, int(t.escape[j]))
            symbols = values + t.offsets[j]
            if count and (symbols.min() < _INT32.min or symbols.max() > _INT32.max):
                raise EntropyStreamError(f"{self.label} holds an escape value outside int32")
            out[positions] = symbols
        self._check_left()
        return out.reshape(indexes.shape)

    def finish(self) -> None:
        """Check that exactly the sentinel is left: the string held these symbols and nothing else."""
        if not np.array_equal(self.coder.decode(_UNIFORM16, 2), _SENTINEL) or not self.coder.is_empty():
            raise EntropyStreamError(f"{self.label} does not end where its symbols end "
                                     "(corrupt, or coded for another size or model)")

    def _check_left(self) -> None:
        if self.coder.num_valid_bits() < SENTINEL_BITS:
            raise EntropyStreamError(f"{self.label} ends before the declared latent is complete")


_INT32 = np.iinfo(np.int32)
_POWERS = 1 << np.arange(34, dtype=np.int64)


def _encode_escapes(coder, values: np.ndarray, escape: int) -> None:
    """Push the escape values (table positions ``v`` outside ``0 … escape − 1``) in the
    order :func:`_decode_escapes` pops them: bit lengths, low chunks, high chunks."""
    below = values < 0
    u = 2 * np.where(below, -values - 1, values - escape) + below  # < 2**33 for int32 symbols
    n = np.searchsorted(_POWERS, u, side="right")  # bit length: 0 for u = 0
    bits = np.maximum(n - 1, 0)
    mantissa = u - np.where(n > 0, 1 << bits, 0)
    low, high = np.minimum(bits, 16), np.maximum(bits - 16, 0)
    if (high > 0).any():
        coder.encode_reverse((mantissa[high > 0] >> 16).astype(np.int32), _UNIFORM,
                             (1 << high[high > 0]).astype(np.int32))
    if (low > 0).any():
        coder.encode_reverse((mantissa[low > 0] & 0xFFFF).astype(np.int32), _UNIFORM,
                             (1 << low[low > 0]).astype(np.int32))
    coder.encode_reverse(n.astype(np.int32), _ESCAPE_LENGTH)


def _decode_escapes(coder, count: int, escape: int) -> np.ndarray:
    """The table positions ``v`` of ``count`` escaped symbols (int64)."""
    n = coder.decode(_ESCAPE_LENGTH, count).astype(np.int64)
    bits = np.maximum(n - 1, 0)
    low, high = np.minimum(bits, 16), np.maximum(bits - 16, 0)
    mantissa = np.zeros(count, dtype=np.int64)
    if (low > 0).any():
        mantissa[low > 0] = coder.decode(_UNIFORM, (1 << low[low > 0]).astype(np.int32))
    if (high > 0).any():
        mantissa[high > 0] |= coder.decode(_UNIFORM, (1 << high[high > 0]).astype(np.int32)).astype(np.int64) << 16
    u = np.where(n > 0, (1 << bits) + mantissa, 0)
    d, below = u >> 1, (u & 1).astype(bool)
    return np.where(below, -d - 1, escape + d)

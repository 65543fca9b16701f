"""The memory-safe entropy coder (``model.entropy_coder``): round trips with real CDF tables,
escapes, and every way a string can fail to hold the declared symbols."""
from __future__ import annotations

import numpy as np
import pytest
import torch

# CompressAI's classes through the package, so its import shim (model.compressai_import) is used.
from parahydra_ros.model.entropy_coder import (
    SENTINEL_BITS,
    CdfTables,
    EntropyStreamError,
    SymbolDecoder,
    SymbolEncoder,
)
from parahydra_ros.model.latent_codec import (
    GaussianConditional,
    cdf_tables,
    decode_hyper_latent,
    encode_hyper_latent,
    get_scale_table,
    min_hyper_latent_bytes,
)
from parahydra_ros.model.parahydra import EntropyBottleneck


@pytest.fixture(scope="module")
def tables() -> CdfTables:
    gc = GaussianConditional(None)
    gc.update_scale_table(get_scale_table(), force=True)
    return cdf_tables(gc)


def _parts(rng, tables, sizes=(300, 1, 0, 2000), spread=40):
    """Parts of symbols with random table indexes; a few far outside every table (escapes)."""
    parts = []
    for n in sizes:
        indexes = rng.integers(len(tables), size=n)
        symbols = np.round(rng.normal(0, 1 + indexes / 4)).astype(np.int64)
        if n:
            symbols[rng.integers(n, size=max(1, n // 50))] = rng.integers(-2**31, 2**31, size=max(1, n // 50))
            symbols[0] = spread * 1000
        parts.append((symbols, indexes))
    return parts


def _encode(tables, parts) -> bytes:
    encoder = SymbolEncoder(tables)
    for symbols, indexes in parts:
        encoder.add(symbols, indexes)
    return encoder.finish()


def test_round_trip_with_escapes_over_the_whole_int32_range(tables):
    rng = np.random.default_rng(0)
    parts = _parts(rng, tables)
    parts.append((np.array([-2**31, 2**31 - 1, 0, -1]), np.array([0, 63, 0, 63])))
    string = _encode(tables, parts)
    assert len(string) % 4 == 0
    decoder = SymbolDecoder(string, tables)
    for symbols, indexes in parts:
        assert np.array_equal(decoder.decode(indexes), symbols)
    decoder.finish()


def test_an_escape_just_past_its_table_costs_a_few_bits(tables):
    """Escapes code their distance beyond the table (~7 bits here), not a 32-bit value, after
    the table's escape symbol (~16 bits: its 16-bit CDF gives it the least probability) —
    about what CompressAI's bypass coding costs."""
    j = 5
    inside = np.zeros(4000, dtype=np.int64)
    beyond = inside.copy()
    beyond[::4] = int(tables.escape[j] + tables.offsets[j]) + 2  # 1000 values 2 past the table's top
    indexes = np.full(4000, j)
    extra = len(_encode(tables, [(beyond, indexes)])) - len(_encode(tables, [(inside, indexes)]))
    assert 8 * extra / 1000 < 26


def test_a_string_shorter_than_its_symbols_stops_at_the_first_part_it_cannot_hold(tables):
    rng = np.random.default_rng(1)
    parts = _parts(rng, tables, sizes=(3000, 3000, 3000))
    string = _encode(tables, parts)
    decoder = SymbolDecoder(string[len(string) // 8 * 4:], tables)  # the first parts' words are at the end
    decoded = 0
    with pytest.raises(EntropyStreamError, match="ends before"):
        for _, indexes in parts:
            decoder.decode(indexes)
            decoded += 1
    assert decoded < len(parts)


@pytest.mark.parametrize("length", range(0, 41))
def test_any_short_string_against_a_large_declared_part_is_refused(tables, length):
    """0…40 bytes (whole words or not, zeros, ones, random) declared to hold a million
    symbols: refused with EntropyStreamError, never read past (constriction is bounds-checked)."""
    rng = np.random.default_rng(length)
    indexes = np.zeros(1_000_000, dtype=np.int64)  # the cheapest table: the most symbols per bit
    for data in (bytes(length), b"\xff" * length, rng.bytes(length)):
        with pytest.raises(EntropyStreamError):
            decoder = SymbolDecoder(data, tables)
            decoder.decode(indexes)
            decoder.finish()


def test_words_added_or_left_over_are_refused(tables):
    """One string, one meaning: the decoder must consume it exactly, sentinel included."""
    string = _encode(tables, _parts(np.random.default_rng(2), tables))
    parts = _parts(np.random.default_rng(2), tables)
    for bad in (b"\x01\x00\x00\x00" + string, string + b"\x07\x00\x00\x00", string[4:]):
        with pytest.raises(EntropyStreamError):
            decoder = SymbolDecoder(bad, tables)
            for _, indexes in parts:
                decoder.decode(indexes)
            decoder.finish()


def test_fewer_or_more_symbols_than_coded_are_refused(tables):
    rng = np.random.default_rng(3)
    symbols = np.round(rng.normal(0, 3, size=5000)).astype(np.int64)
    indexes = rng.integers(20, 64, size=5000)
    string = _encode(tables, [(symbols, indexes)])
    for count in (4000, 6000):
        with pytest.raises(EntropyStreamError):
            decoder = SymbolDecoder(string, tables)
            decoder.decode(indexes[:count] if count < 5000 else np.concatenate([indexes, indexes[:1000]]))
            decoder.finish()


def test_out_of_range_indexes_and_bad_word_counts_are_named_errors(tables):
    with pytest.raises(EntropyStreamError, match="index"):
        SymbolDecoder(_encode(tables, []), tables).decode(np.array([64]))
    with pytest.raises(EntropyStreamError, match="whole 32-bit words"):
        SymbolDecoder(b"\x01\x02\x03", tables)
    with pytest.raises(EntropyStreamError, match="not an ANS stream"):
        SymbolDecoder(b"\x01\x00\x00\x00\x00\x00\x00\x00", tables)  # last word zero: never written


def test_sentinel_bits_constant_matches_the_coder():
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    from parahydra_ros.model import entropy_coder

    coder.encode_reverse(entropy_coder._SENTINEL, entropy_coder._UNIFORM16)
    assert coder.num_valid_bits() == SENTINEL_BITS


def test_min_bits_is_a_lower_bound_for_the_most_probable_symbols(tables):
    """A string of only the most probable symbol of every table (0: the Gaussian tables peak
    there) is still at least ``min_bits`` long."""
    counts = np.full(len(tables), 5000)
    string = _encode(tables, [(np.zeros(5000, dtype=np.int64), np.full(5000, j)) for j in range(len(tables))])
    assert 8 * len(string) >= tables.min_bits(counts) > 0


def test_hyper_latent_round_trip_and_its_size_bound():
    torch.manual_seed(0)
    eb = EntropyBottleneck(8)
    with torch.no_grad():
        eb.quantiles.data[:, 0, :] = torch.tensor([-6.0, 0.0, 6.0])  # wide tables: z costs bits
    eb.update(force=True)
    z = torch.randn(1, 8, 6, 10) * 3
    string = encode_hyper_latent(eb, z)
    medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
    assert torch.equal(decode_hyper_latent(eb, string, (6, 10)), torch.round(z - medians) + medians)
    assert min_hyper_latent_bytes(eb, (6, 10)) <= len(string)
    assert min_hyper_latent_bytes(eb, (60, 100)) > 50 * min_hyper_latent_bytes(eb, (6, 10)) > 0
    for hw in ((6, 12), (12, 10), (3, 10)):  # the string of another size never decodes silently
        with pytest.raises(EntropyStreamError):
            decode_hyper_latent(eb, string, hw)

"""Forged payloads cannot crash the decoder or make it do unbounded work (issue 14).

A CRC is no authentication: anyone who can publish on a latent topic can re-stamp a
real payload with another size and recompute it. Before the memory-safe entropy coder
(``model.entropy_coder``) a real ~1 KB payload re-stamped to 4096×4096 crashed the
decoding process with SIGSEGV inside CompressAI's rANS decoder, and one re-stamped to
16384×16384 grew past 8 GB over minutes. Here such payloads go through the public API
in a subprocess whose address space is bounded (``resource.setrlimit``), and every one
must end in a named ``PayloadError``, quickly, with bounded memory.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from parahydra_ros.codec.api import ParaHydraCodec
from parahydra_ros.codec.container import DEFAULT_MAX_PIXELS
from parahydra_ros.codec.errors import DesynchronizedDecode, ImageTooLarge, TruncatedPayload
from parahydra_ros.model.latent_codec import encode_hyper_latent

REPO = Path(__file__).resolve().parents[1]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _bench("fuzz_container")


@pytest.fixture(scope="module")
def codec() -> ParaHydraCodec:
    return ParaHydraCodec.load()  # the packaged model: the payloads were made with it


@pytest.fixture(scope="module")
def real(codec) -> bytes:
    """A real payload of a 96x128 view (~1 KB, as the issue's)."""
    return codec.encode(np.ascontiguousarray(data.astronaut()[100:196, 150:278]), 3)


def _restamped(payload: bytes, side: int, **changes) -> bytes:
    return fuzz.restamp(payload, height=side, width=side, pad_bottom=0, pad_right=0, **changes)


def test_crafted_payloads_end_in_named_errors_in_a_memory_bounded_process(codec, real):
    """The issue's regression: 4096² (segfaulted) and 16384² (grew past 8 GB) among others,
    through ``ParaHydraCodec.decode`` in one worker whose address space may grow by 1.5 GB."""
    eb = codec.model.entropy_bottleneck
    z_4096 = encode_hyper_latent(eb, eb._get_medians().detach().reshape(1, -1, 1, 1)
                                 .expand(1, -1, 64, 64).contiguous())
    least = codec.model.min_z_bytes((4096, 4096))
    cases = {
        "4096² re-stamped": (_restamped(real, 4096), "TruncatedPayload"),
        "2048² re-stamped": (_restamped(real, 2048), "TruncatedPayload"),
        "16384² re-stamped": (_restamped(real, 16384), "ImageTooLarge"),
        "4096², z padded to the bound": (_restamped(real, 4096, z=fuzz.split(real)[2] + bytes(least)),
                                         "DesynchronizedDecode"),
        "4096², random z of the bound": (_restamped(real, 4096, z=np.random.default_rng(0).bytes(least // 4 * 4 + 4)),
                                         "DesynchronizedDecode"),
        "4096², z valid at that size": (_restamped(real, 4096, z=z_4096), "DesynchronizedDecode"),
    }
    worker = fuzz.Worker(memory_mb=1536, timeout=300)
    try:
        results = {name: worker.run(payload) for name, (payload, _) in cases.items()}
        real_result = worker.run(real)
    finally:
        worker.stop()
    assert real_result["outcome"] == "decoded"
    for name, (_, expected) in cases.items():
        assert results[name]["outcome"] == expected, (name, results[name])
    # Refused before any decoding: no time, no memory beyond what the real payload used.
    for name in ("4096² re-stamped", "2048² re-stamped", "16384² re-stamped", "4096², z padded to the bound",
                 "4096², random z of the bound"):
        assert results[name]["decode_s"] < 2.0, (name, results[name])
    assert results["4096², random z of the bound"]["peak_rss_mb"] < real_result["peak_rss_mb"] + 200


def test_a_16384_payload_is_refused_quickly_even_when_max_pixels_allows_it(codec, real):
    big = _restamped(real, 16384)
    with pytest.raises(ImageTooLarge, match="max_pixels"):
        codec.decode([big])
    roomy = ParaHydraCodec(codec.model, codec.identity, max_pixels=16384 * 16384)
    with pytest.raises(TruncatedPayload, match="declares a larger image"):
        roomy.decode([big])  # the z string cannot hold a 256x256 hyper-latent: refused unread


def test_max_pixels_is_the_api_limit_and_can_be_set(codec, real):
    assert codec.max_pixels == DEFAULT_MAX_PIXELS == 4096 * 4096
    small = ParaHydraCodec(codec.model, codec.identity, max_pixels=96 * 128)
    assert small.decode([real])[0].shape == (96, 128, 3)  # exactly at the limit: decoded
    tighter = ParaHydraCodec(codec.model, codec.identity, max_pixels=96 * 128 - 1)
    with pytest.raises(ImageTooLarge, match="128x96"):
        tighter.decode([real])
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_pixels"):
            ParaHydraCodec(codec.model, codec.identity, max_pixels=bad)


def test_a_payload_declaring_a_larger_size_than_coded_is_refused(codec, real):
    """Any size the z string is too short for is refused by the bound; a size it could hold
    fails the z string's end check, before h_s and Para-EM run at the declared size."""
    for side in (1024, 2048, 4096):
        with pytest.raises(TruncatedPayload):
            codec.decode([_restamped(real, side)])
    with pytest.raises(DesynchronizedDecode, match="z string"):
        codec.decode([fuzz.restamp(real, height=192, width=128, pad_bottom=0, pad_right=0)])


def test_cli_decode_takes_max_pixels(tmp_path, real, capsys):
    from parahydra_ros.cli import main

    (tmp_path / "v.phyd").write_bytes(real)
    assert main(["decode", str(tmp_path / "v.phyd"), "--out-dir", str(tmp_path / "out"),
                 "--max-pixels", "1000"]) == 2
    error = capsys.readouterr().err.strip()
    assert "max_pixels" in error and len(error.splitlines()) == 1
    assert main(["decode", str(tmp_path / "v.phyd"), "--out-dir", str(tmp_path / "out")]) == 0


def test_every_declared_size_against_short_strings_never_crashes(tmp_path):
    """Every padded size up to the limit declared against z and y strings of 0…N bytes (through
    the API), and a sample of sizes — the largest included — with a z string valid at that size
    against y strings of 0…N bytes (into the y decoder), in a memory-bounded subprocess."""
    out = tmp_path / "sweep.json"
    assert fuzz.main(["--sweep", "--max-bytes", "12", "--stride", "1000", "--y-sizes", "1", "--memory-mb", "2048",
                      "--timeout", "540", "--json", str(out)]) == 0
    import json

    report = json.loads(out.read_text())
    assert report["returncode"] == 0 and report["sizes"] > 10000
    assert not [k for k in report["counts"] if not k.split(":")[1] in
                ("TruncatedPayload", "DesynchronizedDecode", "EntropyStreamError", "CorruptPayload")], report


def test_fuzz_harness_finds_no_crash_in_a_brief_run(tmp_path):
    out = tmp_path / "fuzz.json"
    assert fuzz.main(["--cases", "120", "--seed", "14", "--memory-mb", "2048", "--timeout", "120",
                      "--json", str(out)]) == 0
    import json

    report = json.loads(out.read_text())
    assert sum(report["counts"].values()) == 120 and not report["findings"]
    assert "decoded" in report["counts"] and len(report["counts"]) >= 4  # the mutator reaches many outcomes

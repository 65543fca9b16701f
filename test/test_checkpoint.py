"""Every kind of bad checkpoint is one ``CheckpointError`` line naming the file (issue 14).

The same class from the API (``ParaHydraCodec.load``), exit status 2 and one line from the
CLI, and the nodes' ``cannot start: …`` line (``ros.runtime.load_codec`` must not call it a
device error). A hostile pickle is refused without being run and without a suggestion to
load it with ``weights_only=False``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from parahydra_ros.cli import main
from parahydra_ros.codec.api import ParaHydraCodec
from parahydra_ros.codec.checkpoint import load_model, state_hash
from parahydra_ros.codec.errors import CheckpointError
from parahydra_ros.model.configs import get_config
from parahydra_ros.model.parahydra import ParaHydra
from codec_fixtures import tiny_checkpoint


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", steps=0)


class _Hostile:
    """Pickles as a call to os.system: what a malicious "checkpoint" would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rehash(checkpoint: dict) -> dict:
    checkpoint["hash"] = state_hash(checkpoint["state_dict"])
    return checkpoint


def _edit(name: str):
    """The checkpoint edit that makes each kind of bad file (the hash kept consistent)."""
    def drop(key):
        return lambda c: {k: v for k, v in c.items() if k != key}

    def state(change):
        def edit(c):
            change(c["state_dict"])
            return _rehash(c)
        return edit

    def first_float(s):
        return next(k for k, v in s.items() if v.is_floating_point() and v.dim() == 4)

    other = ParaHydra(get_config("tiny", entropy_model="ldmic_ckbd")).state_dict()
    return {
        "missing config": (drop("config"), "lacks config"),
        "missing hash": (drop("hash"), "lacks hash"),
        "missing state_dict": (drop("state_dict"), "lacks state_dict"),
        "unknown config key": (lambda c: {**c, "config": {**c["config"], "colour": "blue"}}, "unknown config field"),
        "config not a dict": (lambda c: {**c, "config": [1, 2, 3]}, "config is a list"),
        "config lacks a width": (lambda c: {**c, "config": {k: v for k, v in c["config"].items() if k != "M"}},
                                 "config lacks M"),
        "absurd widths": (lambda c: {**c, "config": {**c["config"], "N": 4096, "M": 4096}}, "N = 4096"),
        "width of a wrong type": (lambda c: {**c, "config": {**c["config"], "slices": "8"}}, "slices"),
        "config that builds nothing": (lambda c: {**c, "config": {**c["config"], "slices": 7}}, "slices"),
        "another architecture": (lambda c: _rehash({**c, "state_dict": {
            k: v for k, v in other.items() if not k.rsplit(".", 1)[-1].startswith(("_quantized", "_offset",
                                                                                   "_cdf", "scale_table"))}}),
            "another architecture"),
        "wrong shape": (state(lambda s: s.__setitem__(first_float(s), s[first_float(s)][:1])), "has shape"),
        "wrong dtype": (state(lambda s: s.__setitem__(first_float(s), s[first_float(s)].to(torch.int32))),
                        "not a floating-point dtype"),
        "NaN weights": (state(lambda s: s[first_float(s)].view(-1).__setitem__(0, float("nan"))), "NaN"),
        "hash mismatch": (lambda c: {**c, "hash": "0" * 16}, "recorded hash"),
        "hash not hex": (lambda c: {**c, "hash": "not a hash at all"}, "hex digits"),
        "state_dict not tensors": (lambda c: _rehash({**c, "state_dict": {"x": torch.zeros(1)}}) and
                                   {**c, "state_dict": {"x": [1, 2]}}, "mapping of names to tensors"),
        "not a ParaHydra checkpoint": (lambda c: {"weights": c["state_dict"]}, "not a ParaHydra checkpoint"),
        "newer checkpoint format": (lambda c: {**c, "format_version": 99}, "format 99 unsupported"),
    }[name]


KINDS = ["missing config", "missing hash", "missing state_dict", "unknown config key", "config not a dict",
         "config lacks a width", "absurd widths", "width of a wrong type", "config that builds nothing",
         "another architecture", "wrong shape", "wrong dtype", "NaN weights", "hash mismatch", "hash not hex",
         "state_dict not tensors", "not a ParaHydra checkpoint", "newer checkpoint format"]


def _write_bad(good: Path, path: Path, kind: str) -> str:
    edit, expected = _edit(kind)
    checkpoint = torch.load(good, weights_only=True)
    torch.save(edit(checkpoint), path)
    return expected


def _assert_one_line(message: str, path: Path) -> None:
    assert str(path) in message and "\n" not in message.strip() and len(message) < 400, message
    assert "Traceback" not in message


@pytest.mark.parametrize("kind", KINDS)
def test_each_bad_checkpoint_kind_is_one_checkpoint_error_from_the_api(good, tmp_path, kind):
    path = tmp_path / "bad.pt"
    expected = _write_bad(good, path, kind)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=expected) as caught:
        ParaHydraCodec.load(path)
    _assert_one_line(str(caught.value), path)
    if kind == "absurd widths":  # refused before a model of N = M = 4096 is built
        assert time.perf_counter() - start < 5


@pytest.mark.parametrize("kind", ["missing config", "unknown config key", "another architecture", "wrong shape",
                                  "wrong dtype", "absurd widths"])
def test_the_cli_reports_a_bad_checkpoint_in_one_line_with_exit_2(good, tmp_path, kind, capsys):
    path = tmp_path / "bad.pt"
    _write_bad(good, path, kind)
    image = tmp_path / "x.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    assert main(["encode", str(image), str(tmp_path / "x.phyd"), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parahydra encode: error: ")
    _assert_one_line(err, path)


def test_a_hostile_pickle_is_refused_without_running_it_or_suggesting_weights_only_false(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pt"
    torch.save({"format": "parahydra-checkpoint", "payload": _Hostile(marker)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    message = str(caught.value)
    _assert_one_line(message, path)
    assert "refused" in message and "weights_only" not in message and "False" not in message
    assert len(message) < 250 and not marker.exists()
    assert main(["decode", str(tmp_path / "none.phyd"), "--out-dir", str(tmp_path), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert "weights_only" not in err and len(err.strip().splitlines()) == 1 and not marker.exists()


def test_a_file_that_is_no_checkpoint_at_all_is_one_short_line(tmp_path):
    for name, content in (("junk.pt", b"not a checkpoint"), ("empty.pt", b""), ("zip.pt", b"PK\x03\x04" + bytes(64))):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match="not a readable checkpoint") as caught:
            load_model(path)
        _assert_one_line(str(caught.value), path)


def test_the_nodes_report_a_bad_checkpoint_as_such_not_as_a_device_error(good, tmp_path):
    pytest.importorskip("rclpy")
    from parahydra_ros.ros.runtime import load_codec

    path = tmp_path / "bad.pt"
    _write_bad(good, path, "wrong shape")
    with pytest.raises(CheckpointError, match="has shape") as caught:
        load_codec(str(path), "cpu")
    assert "device" not in str(caught.value)


def test_the_good_checkpoint_still_loads(good):
    codec = ParaHydraCodec.load(good)
    assert codec.identity.name == "tiny-test"

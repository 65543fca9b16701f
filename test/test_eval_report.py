"""``parahydra eval``: ParaHydra's curves count every byte, and the report is complete."""
import json
import math

import numpy as np
import pytest

from codec_fixtures import photo, tiny_checkpoint
from parahydra_ros.cli import main as cli
from parahydra_ros.codec.api import ParaHydraCodec
from parahydra_ros.eval.model_rd import model_rd_points


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("eval") / "tiny.pt")


def test_model_curves_count_every_payload_byte(checkpoint):
    codec = ParaHydraCodec.load(checkpoint)
    groups = [[photo(64, 96), photo(64, 96, shift=5)], [photo(64, 96, shift=9), photo(64, 96, shift=2)]]
    curves = model_rd_points(codec, groups, qualities=[1])
    payload_bytes = sum(len(codec.encode(image, 1)) for group in groups for image in group)
    assert curves["joint"][0].bpp == pytest.approx(8 * payload_bytes / (4 * 64 * 96))
    assert curves["joint"][0].bpp == curves["separate"][0].bpp  # the same bitstreams
    assert 5 < curves["joint"][0].psnr < 60 and 0 < curves["joint"][0].ms_ssim <= 1


def test_eval_command_writes_json_and_plot(checkpoint, tmp_path):
    import cv2

    for group in ("a", "b"):
        for view, shift in (("left", 0), ("right", 6)):
            (tmp_path / "data" / group).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "data" / group / f"{view}.png"), photo(64, 96, shift=shift)[:, :, ::-1])
    out = tmp_path / "report.json"
    ablation = tiny_checkpoint(tmp_path / "no_fusion.pt", steps=20, jd_fusion="none")
    assert cli(["eval", "--data", str(tmp_path / "data"), "--model", str(checkpoint), "--compare", str(ablation),
                "--anchors", "jpeg", "webp", "--json", str(out), "--plot", str(tmp_path / "rd.png")]) == 0
    report = json.loads(out.read_text())
    assert report["groups"] == ["a", "b"] and report["reference"] == "jpeg"
    assert set(report["curves"]) == {"parahydra-joint", "parahydra-separate", "no_fusion-joint",
                                     "no_fusion-separate", "jpeg", "webp"}
    assert report["compared"]["no_fusion"]["jd_fusion"] == "none" and report["model"]["jd_fusion"] == "pmifm"
    assert report["curves"]["no_fusion-joint"] == report["curves"]["no_fusion-separate"]  # nothing to fuse with
    assert report["curves"]["no_fusion-joint"] != report["curves"]["parahydra-joint"]
    assert len(report["curves"]["parahydra-joint"]) == 4
    assert report["bd"]["jpeg"]["bd_rate_pchip"] == 0
    assert math.isfinite(report["bd"]["webp"]["bd_rate_cubic"])
    assert (tmp_path / "rd.png").stat().st_size > 10_000

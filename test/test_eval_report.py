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


def test_side_view_control_decodes_the_same_bytes_four_ways(checkpoint, tmp_path):
    from parahydra_ros.codec.metrics import psnr
    from parahydra_ros.eval.control import side_view_control, unrelated_views

    codec = ParaHydraCodec.load(checkpoint)
    codec.model.decoder.gates.fill_(1.0)  # open fusion: side views change the output
    groups = [[photo(64, 96), photo(64, 96, shift=6)], [photo(64, 96, shift=11), photo(64, 96, shift=3)]]
    (point,) = side_view_control(codec, groups, qualities=[1])
    coded = [[codec.encode(view, 1) for view in group] for group in groups]
    stand_ins = [codec.encode(view, 1) for view in unrelated_views(groups, 0)]
    mean = lambda values: float(np.mean(values))  # noqa: E731
    views = [(g, i) for g in range(2) for i in range(2)]
    assert point.partner == pytest.approx(mean([psnr(groups[g][i], codec.decode(coded[g])[i]) for g, i in views]))
    assert point.alone == pytest.approx(mean([psnr(groups[g][i], codec.decode([coded[g][i]])[0]) for g, i in views]))
    assert point.self == pytest.approx(mean([psnr(groups[g][i], codec.decode([coded[g][i]] * 2)[0])
                                             for g, i in views]))
    # view 0 of group 0 with group 1's view 1 (resized) as its unrelated side view
    assert np.array_equal(codec.decode([coded[0][0], stand_ins[1]])[0],
                          codec.decode([coded[0][0], codec.encode(groups[1][1], 1)])[0])
    assert len({point.partner, point.unrelated, point.self, point.alone}) == 4
    assert point.bpp == pytest.approx(8 * sum(map(len, coded[0] + coded[1])) / (4 * 64 * 96))
    rotated = unrelated_views(groups[:1], 0)  # one group: its own views rotated by 180°
    assert np.array_equal(rotated[1], groups[0][1][::-1, ::-1])


def test_eval_command_reports_the_side_view_control(checkpoint, tmp_path):
    import cv2

    for view, shift in (("left", 0), ("right", 6)):
        (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / "a" / f"{view}.png"), photo(64, 96, shift=shift)[:, :, ::-1])
    out = tmp_path / "report.json"
    assert cli(["eval", "--data", str(tmp_path / "data"), "--model", str(checkpoint), "--anchors", "jpeg",
                "--control", "--json", str(out)]) == 0
    control = json.loads(out.read_text())["control"]
    assert [row["quality"] for row in control] == [0, 1, 2, 3]
    for row in control:
        assert row["passes"] == (row["partner_over_unrelated"] >= 0.5 and row["unrelated_over_alone"] <= 0.1)
        assert row["partner_over_unrelated"] == pytest.approx(row["partner"] - row["unrelated"], abs=1e-3)

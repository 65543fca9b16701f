"""The prepared GPU run (scripts/gpu_run.sh, bench/gpu.py) rehearsed on the CPU, so that it
cannot rot while no GPU is at hand: prepare the carried folder, run the one command in its
``--device cpu --minutes 1 --config tiny`` mode, check every JSON it must return, continue
its checkpoint with ``parahydra train --init``'s code and ``verify`` what came back."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RETURNED = {"summary.json", "correctness.json", "speed.json", "train_speed.json", "training.json", "log.txt"}


def _gpu_module():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_run_rehearsal_on_cpu(tmp_path, capsys):
    gpu = _gpu_module()
    photos = tmp_path / "photos" / "set"
    photos.mkdir(parents=True)
    for i in range(3):
        image = cv2.GaussianBlur(np.random.default_rng(i).integers(0, 256, (180, 900, 3), np.uint8), (9, 9), 3)
        cv2.imwrite(str(photos / f"photo_{i}.jpg"), image)
    prepared = tmp_path / "prepared"
    assert gpu.main(["prepare", "--config", "tiny", "--dir", str(prepared), "--photos", str(photos.parent)]) == 0
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert [g["name"] for g in manifest["fixtures"]] == ["group", "mono"]
    assert manifest["photos"]["count"] == 3 and manifest["photos"]["max_side"] == 768
    assert max(cv2.imread(str(p)).shape[1] for p in (prepared / "photos").rglob("*.jpg")) == 768

    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    run = subprocess.run(["bash", "scripts/gpu_run.sh", "--device", "cpu", "--minutes", "1", "--config", "tiny",
                          "--dir", str(prepared)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    checkpoint = "parahydra-tiny-gpu.pt"
    assert RETURNED | {checkpoint} == {p.name for p in out.iterdir()}, "what comes back from $OUT: <= 8 files"

    summary = json.loads((out / "summary.json").read_text())
    assert {name: step["status"] for name, step in summary["steps"].items()} == dict.fromkeys(
        ("correctness", "speed", "train_speed", "training"), "ok")
    assert summary["environment"]["device"] == "cpu"

    correctness = json.loads((out / "correctness.json").read_text())
    assert correctness["passed"] is True
    for group in correctness["groups"]:
        decode = group["device_decode_default"]
        assert decode["errors"] == {} and decode["max_abs_diff"] <= 1 and decode["decoded"] == group["views"]
        encoded = group["device_encoded"]
        assert encoded["cpu_decode_vs_device_decode"]["within_tolerance"]
        assert len(encoded["payloads_b64"]) == len(encoded["cpu_decode_sha256"]) == group["views"]

    speed = json.loads((out / "speed.json").read_text())
    assert [(r["config"], r["size"], r["views"]) for r in speed["rows"]] == [
        ("tiny", "128x64", 2), ("tiny", "128x64", 3)]
    for row in speed["rows"]:
        assert row["encode_s"] > 0 and row["decode_s_fp32"] > 0 and row["synthesis_s_fp32"] > 0
        assert row["decode_peak_mb_fp32"] > 0 and row["bytes_per_view"] > 0
    assert speed["paper_table"][0]["decode_s"] == 0.33

    train_speed = json.loads((out / "train_speed.json").read_text())
    assert [(r["stage"], r["views"]) for r in train_speed["rows"]] == [("single-view", 1), ("multi-view", 2)]
    assert all(r["loss_finite"] and r["steps_per_s"] > 0 for r in train_speed["rows"])

    training = json.loads((out / "training.json").read_text())
    assert training["steps"] == 2 and training["last_step"] == 2 and training["data_workers"] == 1
    assert training["checkpoint"] == {**training["checkpoint"], "file": checkpoint, "step": 2, "saved_because": "end"}
    assert "--init " + checkpoint in training["continue_here"]

    # The checkpoint continues here as `parahydra train --init` does it, and codes.
    from parahydra_ros.codec.checkpoint import load_checkpoint
    from parahydra_ros.train import Trainer, TrainSettings

    stored = load_checkpoint(out / checkpoint)
    assert {str(v.dtype) for v in stored["state_dict"].values() if v.is_floating_point()} == {"torch.float16"}
    assert stored["metadata"]["step"] == 2
    trainer = Trainer(TrainSettings(config="tiny", device="cpu"), None, tmp_path / "continued")
    trainer.load_weights(out / checkpoint)

    capsys.readouterr()
    assert gpu.main(["verify", str(out), "--dir", str(prepared)]) == 0
    printed = capsys.readouterr().out
    assert "device-encoded group: decode on this CPU ok" in printed
    assert f"checkpoint {checkpoint}: parahydra-tiny" in printed


def test_recipe_from_a_recorded_command():
    gpu = _gpu_module()
    command = ("parahydra train --out /r/multi6 --config small --lambdas 16,48 --data synthetic --views 2-3 "
               "--textures /a /b --init /r/multi4/latest.pt --steps 40000 --batch-size 4 --lr=5e-5 "
               "--save-every 100 --threads 2 --resume --amp")
    assert gpu.recipe_from_command(command) == [
        "--config", "small", "--lambdas", "16,48", "--data", "synthetic", "--views", "2-3",
        "--batch-size", "4", "--lr=5e-5"]

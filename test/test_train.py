"""Training: a step lowers the loss, resume reproduces the run, DDP runs on gloo."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from parahydra_ros.codec.checkpoint import load_checkpoint, load_model
from parahydra_ros.data.training import TrainingBatches
from parahydra_ros.model.configs import get_config
from parahydra_ros.train import MetricsLog, Trainer, TrainSettings

REPO = Path(__file__).resolve().parents[1]


def _settings(**changes) -> TrainSettings:
    base = dict(config="tiny", steps=4, batch_size=2, crop=64, min_views=2, max_views=3,
                lr=1e-3, val_every=2, save_every=2, device="cpu")
    return TrainSettings(**{**base, **changes})


def _data(settings: TrainSettings, source: str = "synthetic") -> TrainingBatches:
    return TrainingBatches(source, settings.batch_size, settings.crop,
                           (settings.min_views, settings.max_views), num_qualities=4,
                           seed=settings.seed, validation_groups=1)


def test_batches_are_reproducible_and_aligned():
    data = _data(_settings())
    x1, q1 = data.batch(step=5)
    x2, q2 = data.batch(step=5)
    assert torch.equal(x1, x2) and torch.equal(q1, q2)
    assert x1.shape[0] == 2 and 2 <= x1.shape[1] <= 3 and x1.shape[2:] == (3, 64, 64)
    assert not torch.equal(data.batch(step=6)[0], x1)
    photos = _data(_settings(min_views=1, max_views=1), source="photos")
    assert photos.batch(0)[0].shape == (2, 1, 3, 64, 64)


def test_mixed_source_and_unrelated_side_views():
    mixed = TrainingBatches("mixed", 3, 64, (1, 3), num_qualities=4, validation_groups=1)
    sizes = {mixed.batch(step)[0].shape[1] for step in range(12)}
    assert sizes == {1, 2, 3}  # one-view batches (photo crops) and synthetic groups
    with pytest.raises(ValueError, match="single view"):
        TrainingBatches("photos", 2, 64, (1, 2), num_qualities=4)
    swapped = TrainingBatches("synthetic", 3, 64, (2, 2), num_qualities=4, validation_groups=1,
                              unrelated_rate=1.0)
    plain = TrainingBatches("synthetic", 3, 64, (2, 2), num_qualities=4, validation_groups=1)
    x, _ = swapped.batch(7)
    y, _ = plain.batch(7)
    for b in range(3):  # every group's last view is the next group's first view
        assert torch.equal(x[b, 0], y[b, 0])
        assert torch.equal(x[b, 1], y[(b + 1) % 3, 0])


def test_validation_reports_real_photos_and_the_side_view_control(tmp_path):
    import cv2
    from skimage import data as skdata

    photos = tmp_path / "photos"
    photos.mkdir()
    image = skdata.astronaut()
    for i in range(40):  # the 40th of these plus scikit-image's photos is held back
        crop = image[4 * i:4 * i + 300, 2 * i:2 * i + 300]
        cv2.imwrite(str(photos / f"{i:02d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    settings = _settings(batch_size=1, crop=64)
    data = TrainingBatches("mixed", 1, 64, (1, 3), num_qualities=4, texture_dirs=[photos],
                           validation_groups=2)
    assert data.describe()["validation_photos"] == 1
    assert len(data.textures) == 43  # 4 bundled + 40 - 1 held back
    results = Trainer(settings, data, tmp_path / "run").validate()
    for q in range(4):
        for key in ("val_psnr", "val_photo_psnr", "val_photo_bpp", "val_partner_gain", "val_unrelated_gain"):
            assert math.isfinite(results[f"{key}_q{q}"])
    assert 0 < results["val_photo_psnr_inf"] < 100


def test_training_steps_lower_the_loss_on_a_fixed_batch(tmp_path):
    settings = _settings()
    trainer = Trainer(settings, _data(settings), tmp_path)
    x, quality = trainer.data.batch(0)
    first = trainer.train_step(x, quality)["loss"]
    for _ in range(5):
        last = trainer.train_step(x, quality)["loss"]
    assert last < first


def test_fusion_gates_learn_at_their_own_rate(tmp_path):
    settings = _settings(gate_lr_scale=100.0)
    trainer = Trainer(settings, _data(settings), tmp_path)
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [settings.lr, 100 * settings.lr]
    assert groups[1]["params"] == [trainer.model.decoder.gates]
    gates = trainer.model.decoder.gates
    trainer.train_step(*trainer.data.batch(0))
    assert gates.abs().min() > 10 * settings.lr  # one step moved them ~100x the base rate
    assert len(Trainer(_settings(), _data(settings), tmp_path).optimizer.param_groups) == 1


def test_run_writes_metrics_and_checkpoint_and_resume_reproduces(tmp_path):
    straight = Trainer(_settings(), _data(_settings()), tmp_path / "a")
    straight.run(command="test")
    interrupted = Trainer(_settings(), _data(_settings()), tmp_path / "b")
    interrupted.run(command="test", until=2)
    resumed = Trainer(_settings(), _data(_settings()), tmp_path / "b")
    resumed.resume(tmp_path / "b" / "latest.pt")
    assert resumed.step == 2
    resumed.run(command="test")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    rows = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 5 and "val_psnr_q0" in rows[0]
    meta = load_checkpoint(tmp_path / "a" / "latest.pt")["metadata"]
    assert meta["step"] == 4 and meta["command"] == "test" and meta["data"]["source"] == "synthetic"
    model, identity, _ = load_model(tmp_path / "a" / "latest.pt")
    assert identity.name == "parahydra-tiny" and model.cfg.name == "tiny"


def test_metrics_log_grows_its_header(tmp_path):
    log = MetricsLog(tmp_path / "m.csv")
    log.write({"step": 1, "loss": 2.0})
    log.write({"step": 2, "loss": 1.5, "val_psnr_q0": 20.0})
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0] == "step,loss,val_psnr_q0" and len(lines) == 3


@pytest.mark.slow
def test_two_process_gloo_ddp_step(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "parahydra_ros.train", "--out", str(tmp_path), "--config", "tiny",
           "--steps", "2", "--batch-size", "1", "--crop", "64", "--views", "2",
           "--val-every", "2", "--save-every", "2", "--device", "cpu", "--threads", "1"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(tmp_path / "latest.pt")["metadata"]["step"] == 2


def test_init_carries_quality_gains_to_new_lambdas(tmp_path):
    trained = Trainer(_settings(steps=1), _data(_settings()), tmp_path / "a")
    trained.run(command="test")
    old = trained.model.y_log_gain.detach()
    lambdas = (32.0, 128.0, 384.0, 1152.0, 3456.0)  # a lower rate point below the preset's four
    cfg = get_config("tiny", lambdas=lambdas)
    settings = _settings()
    extended = Trainer(settings, TrainingBatches("synthetic", 2, 64, (2, 3), num_qualities=5, validation_groups=1),
                       tmp_path / "b", cfg)
    extended.load_weights(tmp_path / "a" / "latest.pt")
    new = extended.model.y_log_gain.detach()
    assert new.shape == (5, old.shape[1])
    assert torch.equal(new[1:], old)  # trained λ keep their gains exactly
    # 32 is two thirds of a 128→384 step (in log λ) below 128: extended linearly
    step = (old[1] - old[0]) * (math.log(128 / 32) / math.log(3))
    assert torch.allclose(new[0], old[0] - step, atol=1e-6)
    extended.train_step(*extended.data.batch(0))  # and it trains at five levels
    with pytest.raises(ValueError, match="strictly ascending"):
        get_config("tiny", lambdas=(384.0, 128.0))


def test_prefetch_yields_the_same_batches_in_the_same_order():
    from parahydra_ros.data.prefetch import batches

    data = TrainingBatches("mixed", 2, 64, (1, 3), num_qualities=4, validation_groups=1)
    ahead = list(batches(data, 3, 9, rank=1, depth=2))  # made by a worker process
    assert len(ahead) == 6
    for step, (x, quality) in zip(range(3, 9), ahead):
        expected_x, expected_quality = data.batch(step, 1)
        assert torch.equal(x, expected_x) and torch.equal(quality, expected_quality)
    assert [x.shape for x, _ in batches(data, 3, 9, rank=1)] == [x.shape for x, _ in ahead]


def test_a_run_with_prefetch_is_the_run_without(tmp_path):
    states = []
    for prefetch in (0, 2):
        settings = _settings(prefetch=prefetch, val_every=100)
        trainer = Trainer(settings, _data(settings), tmp_path / str(prefetch))
        trainer.run(command="test", until=2)  # the batches of steps 0 and 1, the same noise
        states.append(trainer.model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_fused_adam_is_the_default_and_survives_resuming_an_unfused_state(tmp_path):
    settings = _settings()
    old = Trainer(_settings(fused_adam=False), _data(settings), tmp_path)
    assert old.optimizer.param_groups[0]["fused"] is None
    old.save(tmp_path / "old.pt", command="test")
    resumed = Trainer(settings, _data(settings), tmp_path)
    resumed.resume(tmp_path / "old.pt")
    assert all(group["fused"] for opt in (resumed.optimizer, resumed.aux_optimizer)
               for group in opt.param_groups)
    resumed.train_step(*resumed.data.batch(0))

"""Training throughput: groups (and megapixels) per second of ``parahydra train`` steps.

For each model configuration and each stage of the training recipe — single-view
pretraining (photo crops, batch 8) and multi-view fine-tuning (synthetic groups of
2 or 3 views, batch 4) — a fresh process times full training steps (forward, rate-
distortion loss, backward, clipping, both optimisers) on 128×128 crops, the way
``parahydra train`` runs them.

    python bench/train_speed.py                          # small and paper on the CPU
    python bench/train_speed.py --configs small --device cuda --json out/bench/train_speed.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, run_worker, write_json  # noqa: E402

COLUMNS = [
    ("config", "config", "s"), ("stage", "stage", "s"), ("views", "V", "d"), ("batch", "batch", "d"),
    ("device", "device", "s"), ("threads", "threads", "d"), ("step_s", "s/step", ".2f"),
    ("groups_per_s", "groups/s", ".2f"), ("mpx_per_s", "Mpx/s", ".3f"), ("params_m", "params M", ".2f"),
]
#: (stage, data source, views per group, batch size): the recipe of the model card.
STAGES = [("single-view", "photos", 1, 8), ("multi-view", "synthetic", 2, 4), ("multi-view", "synthetic", 3, 4)]


def measure(config: str, stage: int, crop: int, steps: int, device: str, threads: int) -> dict:
    """Runs inside the worker process."""
    import torch

    from parahydra_ros.data.training import TrainingBatches
    from parahydra_ros.train import Trainer, TrainSettings

    torch.set_num_threads(threads)
    name, source, views, batch = STAGES[stage]
    settings = TrainSettings(config=config, steps=steps + 1, batch_size=batch, crop=crop,
                             min_views=views, max_views=views, device=device)
    with tempfile.TemporaryDirectory() as out:
        data = TrainingBatches(source, batch, crop, (views, views), num_qualities=4, validation_groups=1)
        trainer = Trainer(settings, data, Path(out))
        batches = [data.batch(step) for step in range(steps + 1)]
        trainer.train_step(*batches[0])  # warm-up
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x, quality in batches[1:]:
            trainer.train_step(x, quality)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        step_s = (time.perf_counter() - start) / steps
    return {
        "config": config, "stage": name, "views": views, "batch": batch, "crop": crop,
        "device": str(trainer.device), "threads": threads, "step_s": step_s,
        "groups_per_s": batch / step_s, "mpx_per_s": batch * views * crop * crop / step_s / 1e6,
        "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["small", "paper"])
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case (paper: 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("out/bench/train_speed.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        config, stage = args.worker.split("@")
        print(json.dumps(measure(config, int(stage), args.crop, args.steps, args.device, args.threads)))
        return 0

    rows = []
    for config in args.configs:
        for stage in range(len(STAGES)):
            steps = args.steps if config != "paper" else min(args.steps, 2)
            arguments = ["--worker", f"{config}@{stage}", "--crop", str(args.crop), "--steps", str(steps),
                         "--device", args.device, "--threads", str(args.threads)]
            row = run_worker(__file__, arguments, f"{config} {STAGES[stage][0]} V={STAGES[stage][2]}")
            rows += [row] if row else []
    print_table(rows, COLUMNS)
    write_json(args.json, {"benchmark": "train_speed", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

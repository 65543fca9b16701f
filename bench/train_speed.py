"""Training throughput: groups (and megapixels) per second of ``parahydra train`` steps.

For each model configuration and each stage of the training recipe — single-view
pretraining (photo crops, batch 8) and multi-view fine-tuning (synthetic groups of
2 or 3 views, batch 4) — a fresh process times full training steps (fetching the batch,
forward, rate-distortion loss, backward, clipping, both optimisers) on 128×128 crops,
the way ``Trainer.run`` runs them.

Variants (``--variants``, comma-separated; ``+`` combines): ``fp32`` is the step as it
was before the speed options (Adam's per-tensor loop, batches made in the step);
``default`` is what ``parahydra train`` does now; ``fused`` (Adam's fused kernel) and
``prefetch`` (batches made 2 steps ahead by a worker process) are the options one by one.
All variants of a stage live in one process, start from the same weights and take
turns step by step (the order rotates every round), so a load that comes and goes on a
shared core hits them alike. Reported per variant: the median and range over the
rounds of the CPU seconds this process spent per step (``time.process_time``: what a
step costs the core it runs on, nearly blind to other processes sharing that core) and
of the wall seconds; the first (untimed) step apart.
The worker process of ``prefetch`` is not in its CPU column: the batch is made on
another core, when there is an idle one.

``--check-steps N`` instead trains every variant N steps from the same initial weights
on the same batches and compares the loss curves and the loss, PSNR and bpp of the
trained weights on held-out batches (the "equal quality after equal steps" check).

    python bench/train_speed.py                          # small and paper on the CPU
    python bench/train_speed.py --configs small --stages 0 1 --threads 1 \\
        --variants fp32,default,fused,prefetch --rounds 7
    python bench/train_speed.py --configs small --stages 0 --check-steps 40 --variants fp32,default
    python bench/train_speed.py --configs small --device cuda --variants default
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's parahydra_ros
from common import print_table, run_worker, write_json  # noqa: E402

COLUMNS = [
    ("config", "config", "s"), ("stage", "stage", "s"), ("views", "V", "d"), ("batch", "batch", "d"),
    ("variant", "variant", "s"), ("device", "device", "s"), ("threads", "threads", "d"),
    ("cpu_s", "CPU s/step", ".3f"), ("cpu_range", "range", "s"), ("wall_s", "wall s/step", ".2f"),
    ("wall_range", "range", "s"), ("speedup", "× first", ".2f"), ("groups_per_s", "groups/CPU s", ".2f"),
    ("batch_cpu_s", "batch CPU s", ".3f"), ("first_step_s", "1st step wall s", ".1f"),
    ("first_step_cpu_s", "1st step CPU s", ".1f"),
]
CHECK_COLUMNS = [
    ("config", "config", "s"), ("stage", "stage", "s"), ("variant", "variant", "s"), ("steps", "steps", "d"),
    ("loss_first10", "loss 1-10", ".3f"), ("loss_last10", "loss last 10", ".3f"),
    ("step_loss_diff", "|Δloss|/loss vs first", ".4f"), ("held_loss", "held-out loss", ".4f"),
    ("held_psnr", "held-out PSNR", ".3f"), ("held_bpp", "held-out bpp", ".4f"),
]
#: (stage, data source, views per group, batch size): the recipe of the model card.
STAGES = [("single-view", "photos", 1, 8), ("multi-view", "synthetic", 2, 4), ("multi-view", "synthetic", 3, 4)]
#: TrainSettings of each variant feature; ``fp32`` is the step before the speed options.
FEATURES = {
    "fp32": {"fused_adam": False},
    "default": {},
    "fused": {"fused_adam": True},
    "prefetch": {"prefetch": 2},
}
HELD_OUT_STEP = 1_000_000  # held-out batches of the quality check: steps no run reaches


def variant_settings(variant: str) -> dict:
    """TrainSettings overrides of ``variant`` (features joined by ``+``; ``fp32`` first)."""
    settings: dict = {}
    names = variant.split("+")
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise SystemExit(f"unknown variant feature(s) {unknown}; choose from {sorted(FEATURES)}")
    for name in sorted(names, key=lambda n: n != "fp32"):  # fp32 is the base the others change
        settings.update(FEATURES[name])
    return settings


def _trainers(config: str, stage: int, crop: int, steps: int, device: str, variants: list[str], out: str):
    from parahydra_ros.data.training import TrainingBatches
    from parahydra_ros.train import Trainer, TrainSettings

    _, source, views, batch = STAGES[stage]
    data = TrainingBatches(source, batch, crop, (views, views), num_qualities=4, validation_groups=1)
    trainers = {}
    for variant in variants:
        settings = TrainSettings(config=config, steps=steps, batch_size=batch, crop=crop, min_views=views,
                                 max_views=views, device=device, **variant_settings(variant))
        trainers[variant] = Trainer(settings, data, Path(out) / variant.replace("+", "_"))
    return data, trainers


def _sync(trainer) -> None:
    import torch

    if trainer.device.type == "cuda":
        torch.cuda.synchronize()


def measure(config: str, stage: int, crop: int, rounds: int, device: str, threads: int,
            variants: list[str]) -> list[dict]:
    """Runs inside the worker process: every variant, turn by turn."""
    import torch

    from parahydra_ros.data.prefetch import batches

    torch.set_num_threads(threads)
    name, _, views, batch = STAGES[stage]
    with tempfile.TemporaryDirectory() as out:
        data, trainers = _trainers(config, stage, crop, rounds + 1, device, variants, out)
        first: dict[str, tuple[float, float]] = {}
        for variant, trainer in trainers.items():  # untimed first step: warms caches
            wall, cpu = time.perf_counter(), time.process_time()
            trainer.train_step(*data.batch(0))
            _sync(trainer)
            first[variant] = (time.perf_counter() - wall, time.process_time() - cpu)
        feeds = {v: batches(data, 1, rounds + 1, depth=t.s.prefetch) for v, t in trainers.items()}
        # a prefetching feed starts its worker now, as a run does before its first step
        pending = {v: next(feeds[v]) for v, t in trainers.items() if t.s.prefetch}
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        batch_cpu = []
        for r in range(rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for variant in order:
                trainer = trainers[variant]
                wall, cpu = time.perf_counter(), time.process_time()
                x, quality = pending.pop(variant) if variant in pending else next(feeds[variant])
                if not trainer.s.prefetch:
                    batch_cpu.append(time.process_time() - cpu)
                trainer.train_step(x, quality)
                _sync(trainer)
                times[variant].append((time.perf_counter() - wall, time.process_time() - cpu))
    rows = []
    for variant in variants:
        walls, cpus = zip(*times[variant])
        cpu_s, wall_s = statistics.median(cpus), statistics.median(walls)
        rows.append({
            "config": config, "stage": name, "views": views, "batch": batch, "crop": crop,
            "variant": variant, "device": str(trainers[variant].device), "threads": threads,
            "rounds": rounds, "cpu_s": cpu_s, "cpu_range": f"{min(cpus):.3f}-{max(cpus):.3f}",
            "wall_s": wall_s, "wall_range": f"{min(walls):.2f}-{max(walls):.2f}",
            "cpu_all": list(cpus), "wall_all": list(walls),
            "groups_per_s": batch / cpu_s, "mpx_per_s": batch * views * crop * crop / cpu_s / 1e6,
            "batch_cpu_s": statistics.median(batch_cpu) if batch_cpu else None,
            "first_step_s": first[variant][0], "first_step_cpu_s": first[variant][1],
            "params_m": sum(p.numel() for p in trainers[variant].model.parameters()) / 1e6,
        })
    for row in rows:
        row["speedup"] = rows[0]["cpu_s"] / row["cpu_s"]
    return rows


def check(config: str, stage: int, crop: int, steps: int, device: str, threads: int,
          variants: list[str]) -> list[dict]:
    """Runs inside the worker process: ``steps`` steps of each variant on the same batches."""
    import torch

    from parahydra_ros.data.prefetch import batches

    torch.set_num_threads(threads)
    name = STAGES[stage][0]
    rows = []
    with tempfile.TemporaryDirectory() as out:
        data, trainers = _trainers(config, stage, crop, steps, device, variants, out)
        held_out = [data.batch(HELD_OUT_STEP + i) for i in range(4)]
        for variant, trainer in trainers.items():
            torch.manual_seed(trainer.s.seed)  # the same training noise too, as far as a variant allows
            start = time.perf_counter()
            losses = [trainer.train_step(x, q)["loss"]
                      for x, q in batches(data, 0, steps, depth=trainer.s.prefetch)]
            trainer.model.eval()
            with torch.no_grad():
                metrics = [trainer.criterion(trainer.model(x.to(trainer.device), q.to(trainer.device)),
                                             x.to(trainer.device), q.to(trainer.device)) for x, q in held_out]
            rows.append({
                "config": config, "stage": name, "variant": variant, "steps": steps, "losses": losses,
                "loss_first10": statistics.mean(losses[:10]), "loss_last10": statistics.mean(losses[-10:]),
                "held_loss": statistics.mean(float(m["loss"]) for m in metrics),
                "held_psnr": statistics.mean(float(m["psnr"]) for m in metrics),
                "held_bpp": statistics.mean(float(m["bpp"]) for m in metrics),
                "train_wall_s": time.perf_counter() - start,
            })
    base = rows[0]["losses"]
    for row in rows:
        row["step_loss_diff"] = statistics.mean(abs(a - b) / b for a, b in zip(row["losses"], base))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["small", "paper"])
    parser.add_argument("--stages", nargs="+", type=int, default=list(range(len(STAGES))),
                        help="stage indexes: 0 single-view B8, 1 two views B4, 2 three views B4")
    parser.add_argument("--variants", default="fp32,default",
                        help=f"comma-separated; features {', '.join(FEATURES)}, joined by +")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--rounds", "--steps", type=int, default=5,
                        help="timed steps per variant (paper: at most 2)")
    parser.add_argument("--check-steps", type=int, default=0,
                        help="instead of timing: train every variant this many steps and compare quality")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("out/bench/train_speed.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = args.variants.split(",")
    for variant in variants:
        variant_settings(variant)

    if args.worker:
        config, stage = args.worker.split("@")
        if args.check_steps:
            rows = check(config, int(stage), args.crop, args.check_steps, args.device, args.threads, variants)
        else:
            rows = measure(config, int(stage), args.crop, args.rounds, args.device, args.threads, variants)
        print(json.dumps(rows))
        return 0

    rows = []
    for config in args.configs:
        for stage in args.stages:
            rounds = args.rounds if config != "paper" else min(args.rounds, 2)
            arguments = ["--worker", f"{config}@{stage}", "--crop", str(args.crop), "--rounds", str(rounds),
                         "--check-steps", str(args.check_steps), "--device", args.device,
                         "--threads", str(args.threads), "--variants", args.variants]
            result = run_worker(__file__, arguments, f"{config} {STAGES[stage][0]} V={STAGES[stage][2]}")
            rows += result or []
    print_table(rows, CHECK_COLUMNS if args.check_steps else COLUMNS)
    write_json(args.json, {"benchmark": "train_speed_check" if args.check_steps else "train_speed",
                           "threads": args.threads, "device": args.device, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

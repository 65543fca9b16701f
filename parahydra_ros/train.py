"""``parahydra train``: rate–distortion training of ParaHydra, resumable, single or multi-GPU.

Stages, as the CPU budget needs (model card): pretrain the single-view parts with
``--views 1`` (Para-JD without side views is a plain decoder), then fine-tune the
fusion with ``--views 2-3 --init single.pt``. One run trains every quality level: each
sample draws a quality and its λ. ``torchrun --nproc_per_node K parahydra-train …``
(or ``python -m torch.distributed.run``) trains with DistributedDataParallel (NCCL on
GPUs, gloo on CPUs).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .codec.checkpoint import apply_state, load_checkpoint, save_checkpoint
from .loss import RateDistortionLoss
from .model.alignment import alignment_loss
from .model.configs import ModelConfig, get_config
from .model.parahydra import GAIN_PARAMETERS, ParaHydra, log_gains_at


@dataclass
class TrainSettings:
    """Everything a run needs besides the data; recorded in every checkpoint."""

    config: str = "small"
    steps: int = 20000
    batch_size: int = 8
    crop: int = 128
    min_views: int = 2
    max_views: int = 3
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_drops: tuple[float, ...] = (0.8, 0.95)  # fractions of ``steps`` where the LR halves
    # LR multiplier of Para-JD's fusion gates (scalars that start at 0). Their fusion
    # modules get gradients scaled by the gate, so with the base LR a closed gate barely
    # opens in a short multi-view fine-tuning; 1 keeps one parameter group.
    gate_lr_scale: float = 1.0
    # Weight of the photometric alignment loss of OPAM (model.alignment); 0: off.
    align_weight: float = 0.0
    clip: float = 1.0
    metric: str = "mse"
    val_every: int = 500
    save_every: int = 500
    seed: int = 0
    amp: bool = False
    device: str = "auto"
    # Speed, not results (bench/train_speed.py; ``small``, 128² crops, one AVX2 core):
    # Adam's fused kernel (the same update in one pass: 12 instead of 50 ms a step);
    # batches made up to ``prefetch`` steps ahead by a worker process (1 % of a one-view
    # step, 5 % of a two-view one, and only when another core is idle). Measured and left
    # out: bf16 autocast (8x slower without AVX-512 BF16 or AMX), channels-last weights (no
    # gain), torch.compile (1.1-1.25x after ~7 min of compiling per batch shape).
    fused_adam: bool = True
    prefetch: int = 0


class Trainer:
    """One training run: model, optimisers, schedule, logging and checkpoints."""

    def __init__(self, settings: TrainSettings, data, out_dir: Path, cfg: ModelConfig | None = None,
                 name: str | None = None):
        self.s = settings
        self.data = data  # has .batch(step, rank) -> (x B×V×3×H×W, quality B) and .validation()
        self.out_dir = out_dir
        self.rank, self.world = _distributed_rank()
        self.device = _device(settings.device, self.rank)
        torch.manual_seed(settings.seed + self.rank)
        self.cfg = cfg or get_config(settings.config)
        self.name = name or f"parahydra-{self.cfg.name}"
        self.model = ParaHydra(self.cfg).to(self.device)
        self.criterion = RateDistortionLoss(self.cfg.lambdas, settings.metric).to(self.device)
        main, aux = _parameter_groups(self.model, settings.lr, settings.gate_lr_scale)
        fused = settings.fused_adam or None
        self.optimizer = torch.optim.Adam(main, lr=settings.lr, fused=fused)
        self.aux_optimizer = torch.optim.Adam(aux, lr=settings.aux_lr, fused=fused)
        for optimizer in (self.optimizer, self.aux_optimizer):  # a resumed state keeps this run's choice
            optimizer.register_load_state_dict_post_hook(
                lambda opt: [group.update(fused=fused, foreach=None) for group in opt.param_groups])
        milestones = [int(f * settings.steps) for f in settings.lr_drops]
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, gamma=0.5)
        self.step = 0
        self.wall = 0.0  # seconds of training so far, over every resumed run
        self.net: nn.Module = self.model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)

    # -- state ---------------------------------------------------------------------------
    def load_weights(self, path: Path) -> None:
        """Initialise from another checkpoint's weights (e.g. single-view pretraining); quality
        gains trained at other λ are carried to this run's λ (``log_gains_at``)."""
        checkpoint = load_checkpoint(path)
        state = dict(checkpoint["state_dict"])
        trained_at = tuple(checkpoint["config"]["lambdas"])
        if trained_at != tuple(self.cfg.lambdas):
            for key in GAIN_PARAMETERS:
                if key in state:
                    state[key] = log_gains_at(trained_at, state[key].float(), self.cfg.lambdas)
            _log(self.rank, f"quality gains carried from λ {trained_at} to {tuple(self.cfg.lambdas)}")
        loaded = apply_state(self.model, state, strict=False)
        _log(self.rank, f"initialised {len(loaded)}/{len(self.model.state_dict())} tensors from {path}")

    def resume(self, path: Path) -> None:
        """Continue a run exactly where its checkpoint left it."""
        checkpoint = load_checkpoint(path)
        meta = checkpoint["metadata"]
        apply_state(self.model, checkpoint["state_dict"])
        self.optimizer.load_state_dict(meta["optimizer"])
        self.aux_optimizer.load_state_dict(meta["aux_optimizer"])
        self.scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(meta["rng"])
        self.step, self.wall = meta["step"], meta["wall_seconds"]
        _log(self.rank, f"resumed {path} at step {self.step}")

    def save(self, path: Path, command: str) -> None:
        if self.rank:
            return
        save_checkpoint(
            path, self.model, self.name,
            step=self.step, wall_seconds=self.wall, settings=_plain(vars(self.s)),
            data=self.data.describe(), command=command, qualities=list(self.cfg.lambdas),
            optimizer=self.optimizer.state_dict(), aux_optimizer=self.aux_optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), rng=torch.get_rng_state(),
        )

    # -- loop ----------------------------------------------------------------------------
    def train_step(self, x: Tensor, quality: Tensor) -> dict[str, float]:
        self.net.train()
        x, quality = x.to(self.device), quality.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        self.aux_optimizer.zero_grad(set_to_none=True)
        align = self.s.align_weight > 0 and x.shape[1] > 1
        with torch.autocast(self.device.type, enabled=self.s.amp and self.device.type == "cuda"):
            output = self.net(x, quality, return_features=align)
        metrics = self.criterion(output, x, quality)
        loss = metrics["loss"]
        if align:
            metrics["align"] = alignment_loss(self.model.decoder, output["features"], x,
                                              self.data.true_pairs(x))
            loss = loss + self.s.align_weight * metrics["align"]
        loss.backward()
        if self.s.clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.s.clip)
        self.optimizer.step()
        aux = self.model.aux_loss()
        aux.backward()
        self.aux_optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {**{k: float(v) for k, v in metrics.items()}, "aux": float(aux)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation metrics, all from held-back data:

        * ``val_bpp_q*`` / ``val_psnr_q*``: estimated bpp and PSNR per quality on synthetic groups;
        * ``val_photo_bpp_q*`` / ``val_photo_psnr_q*``: the same on held-back real photographs
          (one view, no side); ``val_photo_psnr_inf``: their PSNR without quantisation
          (``Para-JD(g_a(x))``), the ceiling no rate can pass;
        * ``val_partner_gain_q*`` / ``val_unrelated_gain_q*``: dB that the first view of each
          synthetic group gains over decoding it alone, from its true partners and from the
          views of another group in their place (the same ``ŷ``). A fusion that uses the other
          cameras shows a partner gain well above an unrelated gain near zero;
        * ``val_align``: the alignment loss of the synthetic groups (view 1 onto view 0).
        """
        self.model.eval()
        results: dict[str, float] = {}
        groups = [x.to(self.device) for x in self.data.validation()]
        photos = [x.to(self.device) for x in self.data.validation_photos()]
        for q in range(self.cfg.num_qualities):
            for prefix, samples in (("val", groups), ("val_photo", photos)):
                if not samples:
                    continue
                totals = {"bpp": 0.0, "psnr": 0.0}
                for x in samples:
                    quality = torch.full((x.shape[0],), q, device=self.device)
                    metrics = self.criterion(self.model(x, quality), x, quality)
                    totals["bpp"] += float(metrics["bpp"])
                    totals["psnr"] += float(metrics["psnr"])
                for key, value in totals.items():
                    results[f"{prefix}_{key}_q{q}"] = value / len(samples)
            if len(groups) > 1 and groups[0].shape[1] > 1:
                results.update({f"{k}_q{q}": v for k, v in self._side_view_control(groups, q).items()})
        if groups and groups[0].shape[1] > 1:  # how well OPAM moves the partner image onto the main
            middle = torch.full((1,), self.cfg.num_qualities // 2, device=self.device)
            losses = [float(alignment_loss(self.model.decoder, self.model(x, middle, return_features=True)
                                           ["features"], x, torch.ones(1, dtype=torch.bool)))
                      for x in groups]
            results["val_align"] = sum(losses) / len(losses)
        if photos:
            decoder = self.model.decoder
            psnrs = [_psnr(decoder(self.model.g_a(x.flatten(0, 1)).unsqueeze(1), joint=False), x)
                     for x in photos]
            results["val_photo_psnr_inf"] = sum(psnrs) / len(psnrs)
        return results

    def _side_view_control(self, groups: list[Tensor], q: int) -> dict[str, float]:
        """Partner and unrelated-side gains (dB) of view 0 of every group at quality ``q``."""
        latents = []
        for x in groups:
            quality = torch.full((x.shape[0],), q, device=self.device)
            latents.append(self.model.quantized_latents(x, quality)[0])
        gains = {"val_partner_gain": 0.0, "val_unrelated_gain": 0.0}
        decoder = self.model.decoder
        for i, (x, y_hat) in enumerate(zip(groups, latents)):
            other = latents[(i + 1) % len(latents)]
            unrelated = torch.cat([y_hat[:, :1], other[:, 1:]], dim=1)
            alone = _psnr(decoder(y_hat[:, :1], joint=False), x[:, :1])
            gains["val_partner_gain"] += _psnr(decoder(y_hat)[:, :1], x[:, :1]) - alone
            gains["val_unrelated_gain"] += _psnr(decoder(unrelated)[:, :1], x[:, :1]) - alone
        return {k: v / len(groups) for k, v in gains.items()}

    def run(self, command: str, until: int | None = None) -> None:
        """Train up to step ``until`` (default: the end of the schedule), saving as it goes."""
        from tqdm import tqdm

        from .data.prefetch import batches as prefetched

        until = min(until or self.s.steps, self.s.steps)

        log = MetricsLog(self.out_dir / "metrics.csv") if self.rank == 0 else None
        bar = tqdm(total=self.s.steps, initial=self.step, disable=self.rank != 0,
                   dynamic_ncols=True, unit="step")
        latest = self.out_dir / "latest.pt"
        batches = prefetched(self.data, self.step, until, self.rank, self.s.prefetch)
        while self.step < until:
            start = time.perf_counter()
            x, quality = next(batches)
            metrics = self.train_step(x, quality)
            self.wall += time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", bpp=f"{metrics['bpp']:.3f}",
                            psnr=f"{metrics['psnr']:.2f}")
            row = {"step": self.step, "wall_s": round(self.wall, 1),
                   "lr": self.optimizer.param_groups[0]["lr"], **metrics}
            if self.step % self.s.val_every == 0 or self.step == self.s.steps:
                row.update(self.validate())
            if log:
                log.write(row)
            if self.step % self.s.save_every == 0 or self.step in (until, self.s.steps):
                self.save(latest, command)
        bar.close()


class MetricsLog:
    """Append-only CSV of training metrics; the header grows when new columns appear."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict[str, Any]) -> None:
        rows = list(csv.DictReader(self.path.open())) if self.path.exists() else []
        fields = list(dict.fromkeys([*(rows[0].keys() if rows else []), *row]))
        if rows and list(rows[0].keys()) == fields:
            with self.path.open("a", newline="") as handle:
                csv.DictWriter(handle, fields).writerow(row)
            return
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            writer.writerows([*rows, row])


def _parameter_groups(model: nn.Module, lr: float, gate_lr_scale: float = 1.0
                      ) -> tuple[list[dict], list[Tensor]]:
    """Main parameter groups (the fusion gates apart when their LR differs) and the
    EntropyBottleneck quantiles (optimised by the aux loss)."""
    named = [(n, p) for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    if gate_lr_scale == 1.0:
        return [{"params": [p for _, p in named]}], aux
    gates = [p for n, p in named if n == "decoder.gates"]
    rest = [p for n, p in named if n != "decoder.gates"]
    return [{"params": rest}, {"params": gates, "lr": lr * gate_lr_scale}], aux


def _psnr(x_hat: Tensor, x: Tensor) -> float:
    """PSNR (dB) of ``x_hat`` clamped to [0, 1] against ``x``, over the whole tensor."""
    mse = float((x_hat.clamp(0, 1) - x).pow(2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _distributed_rank() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device(name: str, rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    return torch.device(name)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _log(rank: int, message: str) -> None:
    if rank == 0:
        print(message, file=sys.stderr)


def register(subparsers) -> None:
    """Add ``parahydra train`` to the CLI."""
    defaults = TrainSettings()
    p = subparsers.add_parser("train", help="train a ParaHydra model (resumable, DDP via torchrun)")
    p.add_argument("--out", type=Path, required=True, help="run directory (latest.pt, metrics.csv)")
    p.add_argument("--config", default=defaults.config, help="paper, small or tiny")
    p.add_argument("--jd-fusion", default=None, help="ablation: joint-decoder fusion variant")
    p.add_argument("--entropy-model", default=None, help="ablation: entropy model variant")
    p.add_argument("--lambdas", default=None,
                   help="λ of the quality levels, ascending, e.g. 16,128,384,1152,3456 (default: the config's)")
    p.add_argument("--data", default="synthetic",
                   help="photos (one view) | synthetic | mixed (photos for one-view batches, synthetic "
                        "groups otherwise) | folder:ROOT[:groups|instereo2k|cityscapes|wildtrack] "
                        "(train split) | bag:PATH:TOPIC,TOPIC... (a rosbag's camera groups)")
    p.add_argument("--unrelated-rate", type=float, default=0.0,
                   help="fraction of multi-view groups whose last view is replaced by another "
                        "group's view, so the decoder learns to ignore side views of other scenes")
    p.add_argument("--textures", nargs="*", default=[],
                   help="photo folders (searched recursively) for photo crops and synthetic textures; "
                        "every 40th photo is held back for validation")
    p.add_argument("--views", default=f"{defaults.min_views}-{defaults.max_views}",
                   help="views per group, N or MIN-MAX (1 = single-view pretraining)")
    for name in ("steps", "batch_size", "crop", "val_every", "save_every", "seed"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("lr", "aux_lr", "clip", "gate_lr_scale", "align_weight"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument("--metric", choices=("mse", "ms-ssim"), default=defaults.metric)
    p.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    p.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--prefetch", type=int, default=defaults.prefetch,
                   help="make batches up to N steps ahead in a worker process (0: in the step)")
    p.add_argument("--no-fused-adam", dest="fused_adam", action="store_false",
                   help="Adam's per-tensor loop instead of its fused kernel")
    p.add_argument("--resume", action="store_true",
                   help="continue OUT/latest.pt when it exists (restartable jobs)")
    p.add_argument("--init", type=Path, help="start from another checkpoint's weights")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    from .data.training import TrainingBatches

    if args.threads:
        torch.set_num_threads(args.threads)
    low, _, high = args.views.partition("-")
    views = (int(low), int(high or low))
    settings = TrainSettings(
        config=args.config, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
        min_views=views[0], max_views=views[1], lr=args.lr, aux_lr=args.aux_lr, clip=args.clip,
        metric=args.metric, val_every=args.val_every, save_every=args.save_every, seed=args.seed,
        amp=args.amp, device=args.device, gate_lr_scale=args.gate_lr_scale,
        align_weight=args.align_weight, fused_adam=args.fused_adam, prefetch=args.prefetch)
    switches = {k: v for k, v in (("jd_fusion", args.jd_fusion), ("entropy_model", args.entropy_model)) if v}
    if args.lambdas:
        switches["lambdas"] = tuple(float(v) for v in args.lambdas.split(","))
    cfg = get_config(args.config, **switches)
    data = TrainingBatches(args.data, args.batch_size, args.crop, views, cfg.num_qualities,
                           seed=args.seed, texture_dirs=args.textures, unrelated_rate=args.unrelated_rate)
    trainer = Trainer(settings, data, args.out, cfg)
    latest = args.out / "latest.pt"
    if args.resume and latest.exists():
        trainer.resume(latest)
    elif args.init:
        trainer.load_weights(args.init)
    trainer.run(command=getattr(args, "command_line", None) or shlex.join(["parahydra", *sys.argv[1:]]))


def main() -> int:
    """``parahydra-train`` for torchrun: the ``train`` sub-command's arguments."""
    parser = argparse.ArgumentParser(prog="parahydra-train")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *sys.argv[1:]])
    args.command_line = shlex.join(["parahydra", "train", *sys.argv[1:]])
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Ship a training run as the packaged default model, with its model card.

    python scripts/release_model.py RUN_DIR [--pretrain EARLIER_RUN_OR_CKPT ...] [--notes NOTES.md]
                                    [--eval-data ../shared/data]

Writes ``parahydra_ros/weights/parahydra_small.pt`` (float16 weights, config, quality
levels, provenance; no optimiser state), evaluates it on the real multi-view sets of
``--eval-data`` against every classical anchor, with the side-view control
(``parahydra eval --control``; anchors cached under ``~/.cache/parahydra/anchor_rd``),
plots the training curve, and writes ``parahydra_ros/weights/MODEL_CARD.md`` (the
hand-written ``--notes``, e.g. the experiment table and status, go first).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "parahydra_ros" / "weights"
#: Classical anchors of the card (AV1 and VVC take ~10x longer than the others; their
#: results are cached per image, so a second release on the same images is quick).
ANCHORS = ("jpeg", "webp", "avif", "hevc", "av1", "vvc")
ANCHOR_CACHE = Path.home() / ".cache" / "parahydra" / "anchor_rd"
EVAL_SETS = {  # name: (folder under --eval-data, views per group)
    "middlebury2005_06": ("middlebury2005_06", 2),
    "kermit (3 views)": ("bundler_kermit", 3),
    "motorcycle": ("skimage_motorcycle", 2),
}


def export(run: Path, name: str) -> dict:
    from parahydra_ros.codec.checkpoint import load_checkpoint, load_model, save_checkpoint

    model, _, meta = load_model(run / "latest.pt")
    keep = {k: meta[k] for k in ("step", "wall_seconds", "settings", "data", "command", "qualities")}
    out = WEIGHTS / "parahydra_small.pt"
    identity = save_checkpoint(out, model, name, half=True, **keep)
    load_checkpoint(out)  # the shipped file loads
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), {identity.name} {identity.hash}")
    return {"identity": identity, "config": model.cfg.to_dict(), **keep}


def evaluate(eval_data: Path, out_dir: Path, anchors: tuple[str, ...] = ANCHORS) -> dict[str, dict]:
    reports = {}
    for label, (folder, views) in EVAL_SETS.items():
        root = eval_data / folder
        if not root.is_dir():
            continue
        json_path = out_dir / f"eval_{folder}.json"
        subprocess.run([sys.executable, "-m", "parahydra_ros.cli", "eval", "--data", str(root),
                        "--max-views", str(views), "--json", str(json_path), "--anchors", *anchors,
                        "--anchor-cache", str(ANCHOR_CACHE), "--control",
                        "--plot", str(out_dir / f"rd_{folder}.png")], check=True)
        reports[label] = json.loads(json_path.read_text())
    return reports


def plot_curve(metrics: Path, path: Path) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in csv.DictReader(metrics.open()) if r.get("val_psnr_q0")]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    qualities = sorted({k.split("_q")[1] for k in rows[0] if k.startswith("val_psnr_q")}) if rows else []
    for q in qualities:
        axis.plot([float(r["wall_s"]) / 3600 for r in rows], [float(r[f"val_psnr_q{q}"]) for r in rows],
                  label=f"quality {q}")
    axis.set_xlabel("training wall time (h)")
    axis.set_ylabel("validation PSNR (dB, synthetic groups)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(path, bbox_inches="tight")
    return rows


def throughput_table(rows: list[dict]) -> list[str]:
    """The training-throughput section of the card, from ``bench/train_speed.py``'s JSON rows."""
    lines = ["## Training throughput (`bench/train_speed.py`, 128×128 crops)", "",
             "| config | stage | views | batch | device | threads | s/step | groups/s | Mpx/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['stage']} | {r['views']} | {r['batch']} | {r['device']} | "
                     f"{r['threads']} | {r['step_s']:.2f} | {r['groups_per_s']:.2f} | {r['mpx_per_s']:.3f} |")
    return lines + [""]


def card(info: dict, reports: dict, curve_rows: list[dict], stages: list[dict],
         throughput: list[dict], notes: str = "") -> str:
    identity = info["identity"]
    lines = [
        f"# Model card: {identity.name}", "", *([notes.rstrip(), ""] if notes else []),
        f"Weights `parahydra_small.pt`, hash `{identity.hash}`, config `{info['config']['name']}` "
        f"(N={info['config']['N']}, M={info['config']['M']}, {info['config']['slices']} slices), "
        f"{len(info['qualities'])} quality levels "
        f"(λ = {', '.join(str(int(q)) for q in info['qualities'])}, MSE on [0, 1] images), stored in float16.",
        "", "## Training", "",
        "Each stage starts from the weights of the one before (`--init`, tensors of the same "
        "name and shape); all ran on this 2-core CPU.", "",
        *[f"{n}. `{stage['command']}` — {stage['step']} iterations, {stage['wall_seconds'] / 3600:.2f} h, "
          f"data {json.dumps(stage['data'])}" for n, stage in enumerate(stages, 1)],
        f"{len(stages) + 1}. (shipped) `{info['command']}` — {info['step']} iterations, "
        f"{info['wall_seconds'] / 3600:.2f} h, data {json.dumps(info['data'])}",
        "",
        f"Total training wall time {sum(s['wall_seconds'] for s in [*stages, info]) / 3600:.2f} h. "
        "Convergence of the last stage: `training_curve.png` (validation PSNR per quality "
        "on held-back groups).", "",
    ]
    if curve_rows:
        last = curve_rows[-1]
        lines += ["| step | wall h | " + " | ".join(f"q{q} bpp / dB" for q in range(len(info["qualities"]))) + " |",
                  "|---" * (2 + len(info["qualities"])) + "|"]
        for row in curve_rows[:: max(1, len(curve_rows) // 8)] + ([last] if curve_rows[-1] is not last else []):
            cells = [f"{float(row[f'val_bpp_q{q}']):.3f} / {float(row[f'val_psnr_q{q}']):.2f}"
                     for q in range(len(info["qualities"]))]
            lines.append(f"| {row['step']} | {float(row['wall_s']) / 3600:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
        if last.get("val_photo_psnr_inf"):
            top = len(info["qualities"]) - 1
            lines += ["Held-back real photographs (one view) and the side-view control on the synthetic "
                      "validation groups (dB gained over decoding alone, same ŷ):", "",
                      f"| step | photo q0 bpp / dB | photo q{top} bpp / dB | photo PSNR unquantised | "
                      f"partner gain q{top} | unrelated gain q{top} | alignment loss |", "|---|---|---|---|---|---|---|"]
            for row in curve_rows:
                if not row.get("val_photo_psnr_inf"):
                    continue
                lines.append(
                    f"| {row['step']} | {float(row['val_photo_bpp_q0']):.3f} / {float(row['val_photo_psnr_q0']):.2f} | "
                    f"{float(row[f'val_photo_bpp_q{top}']):.3f} / {float(row[f'val_photo_psnr_q{top}']):.2f} | "
                    f"{float(row['val_photo_psnr_inf']):.2f} | {float(row[f'val_partner_gain_q{top}']):+.2f} | "
                    f"{float(row[f'val_unrelated_gain_q{top}']):+.2f} | {row.get('val_align') or '-'} |")
            lines.append("")
    if throughput:
        lines += throughput_table(throughput)
    lines += ["## Evaluation on real multi-view images (never used for training)", ""]
    for label, report in reports.items():
        lines += [f"### {label}: {len(report['groups'])} groups", "",
                  "| codec | BD-rate vs JPEG (cubic) | BD-rate vs JPEG (PCHIP) | BD-PSNR (PCHIP) |", "|---|---|---|---|"]
        for name, row in report["bd"].items():
            lines.append(f"| {name} | {row['bd_rate_cubic']:.2f} % | {row['bd_rate_pchip']:.2f} % | "
                         f"{row['bd_psnr_pchip']:.2f} dB |")
        lines += ["", "| codec | RD points (bpp / PSNR dB) |", "|---|---|"]
        for name, points in report["curves"].items():
            lines.append(f"| {name} | " + ", ".join(f"{p['bpp']:.3f} / {p['psnr']:.2f}" for p in points) + " |")
        lines.append("")
        if report.get("control"):
            lines += ["Side-view control (`parahydra eval --control`; PSNR of each view's same bitstream, dB):", "",
                      "| quality | bpp | with partners | with another scene | with itself | alone | "
                      "partner − unrelated | unrelated − alone | pass |", "|---|---|---|---|---|---|---|---|---|"]
            for p in report["control"]:
                lines.append(f"| {p['quality']} | {p['bpp']:.3f} | {p['partner']:.2f} | {p['unrelated']:.2f} | "
                             f"{p['self']:.2f} | {p['alone']:.2f} | {p['partner_over_unrelated']:+.2f} | "
                             f"{p['unrelated_over_alone']:+.2f} | {'yes' if p['passes'] else 'no'} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", default="parahydra-small")
    parser.add_argument("--eval-data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pretrain", type=Path, nargs="*", default=[],
                        help="the runs (folders) or checkpoints RUN descends from (--init), earliest first")
    parser.add_argument("--notes", type=Path, help="hand-written Markdown put first in the card")
    parser.add_argument("--anchors", nargs="+", default=list(ANCHORS), help="classical anchors of the card")
    parser.add_argument("--train-speed", type=Path, help="bench/train_speed.py's JSON for the card")
    args = parser.parse_args()
    torch.set_num_threads(2)
    info = export(args.run, args.name)
    reports = evaluate(args.eval_data, WEIGHTS, tuple(args.anchors))
    rows = plot_curve(args.run / "metrics.csv", WEIGHTS / "training_curve.png")
    from parahydra_ros.codec.checkpoint import load_checkpoint

    stages = [load_checkpoint(run / "latest.pt" if run.is_dir() else run)["metadata"] for run in args.pretrain]
    throughput = json.loads(args.train_speed.read_text())["rows"] if args.train_speed else []
    notes = args.notes.read_text() if args.notes else ""
    (WEIGHTS / "MODEL_CARD.md").write_text(card(info, reports, rows, stages, throughput, notes))
    print(f"wrote {WEIGHTS / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

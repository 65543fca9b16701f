"""``parahydra eval``: ParaHydra against the classical codecs on real multi-view images.

    parahydra eval --data ROOT [--model CKPT] [--compare CKPT ...] --json out.json --plot out.png

For every quality of the model (and of each ``--compare`` checkpoint: ablation variants,
the LDMIC baseline, an earlier training stage; curves named after the file), and every
setting of each classical anchor's sweep, over the same images: bpp (every byte of every view), PSNR and MS-SSIM on the decoded
8-bit images; ParaHydra decoded jointly and separately from the same bitstreams;
BD-rate and BD-PSNR of every curve against one anchor (cubic and PCHIP). The JSON is
sorted and rounded so two versions can be diffed.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .rd import RDPoint

DEFAULT_ANCHORS = ("jpeg", "webp", "avif", "hevc", "av1", "vvc")


def load_groups(root: Path, layout: str = "groups", split: str | None = None,
                max_views: int | None = None, max_groups: int | None = None):
    """The views of each group of a folder dataset, as the codec reads them (``codec.images.read_image``:
    uint8 RGB, or mono for a grey file, so that ``parahydra eval`` codes a file as ``parahydra
    encode`` does; the classical anchors code a grey view as its RGB expansion)."""
    from ..codec.images import read_image
    from ..data.folders import discover_groups

    groups = []
    for group in discover_groups(root, layout, split)[:max_groups]:
        views = [read_image(path) for path in group.paths[:max_views]]
        if len(views) and all(v.shape[:2] == views[0].shape[:2] for v in views):
            groups.append((group.name, views))
    if not groups:
        raise ValueError(f"{root}: no group of same-size views found")
    return groups


def bd_table(curves: dict[str, list[RDPoint]], reference: str) -> dict[str, dict[str, float]]:
    """BD-rate (%) and BD-PSNR (dB) of every curve against ``reference``, both interpolations."""
    from .bjontegaard import bd_psnr, bd_rate

    anchor = curves[reference]
    table = {}
    for name, points in curves.items():
        row = {}
        for method in ("cubic", "pchip"):
            args = ([p.bpp for p in anchor], [p.psnr for p in anchor],
                    [p.bpp for p in points], [p.psnr for p in points])
            for metric, function in (("bd_rate", bd_rate), ("bd_psnr", bd_psnr)):
                try:
                    row[f"{metric}_{method}"] = function(*args, method=method)
                except ValueError:  # curves that do not overlap, too few points
                    row[f"{metric}_{method}"] = math.nan
        table[name] = row
    return table


def plot_rd(curves: dict[str, list[RDPoint]], path: Path, title: str) -> None:
    """PSNR against bpp, one line per codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5), dpi=120)
    for name, points in curves.items():
        points = sorted(points, key=lambda p: p.bpp)
        style = "-o" if name.startswith("parahydra") else "--."
        axis.plot([p.bpp for p in points], [p.psnr for p in points], style, label=name)
    axis.set_xlabel("bits per pixel (every byte of every view)")
    axis.set_ylabel("RGB PSNR (dB)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)


def evaluate(codec, groups, anchors: list[str], reference: str,
             compared: dict[str, Any] | None = None, anchor_cache: Path | None = None) -> dict[str, Any]:
    """Every curve and the BD table for ``groups`` (list of (name, views)); ``compared`` maps
    a label to another codec (an ablation variant or baseline) whose curves join the report."""
    from ..codec.image_conversions import as_rgb
    from .anchors import ANCHORS
    from .model_rd import model_rd_points
    from .rd import anchor_rd_points

    views = [views for _, views in groups]
    models = {"parahydra": codec, **(compared or {})}
    curves = {f"{label}-{mode}": points for label, model in models.items()
              for mode, points in model_rd_points(model, views).items()}
    skipped = {}
    for name in anchors:
        available = ANCHORS[name].available()
        if not available:
            skipped[name] = available.reason
            continue
        curves[name] = anchor_rd_points([as_rgb(image) for group in views for image in group], ANCHORS[name],
                                        cache=anchor_cache)
    if reference not in curves:
        raise ValueError(f"reference anchor {reference!r} was not evaluated")
    return {
        "model": _describe(codec),
        "compared": {label: _describe(model) for label, model in (compared or {}).items()},
        "groups": [name for name, _ in groups], "views_per_group": [len(v) for v in views],
        "reference": reference, "skipped_anchors": skipped,
        "curves": {name: [_rounded(vars(p)) for p in points] for name, points in curves.items()},
        "bd": {name: _rounded(row) for name, row in bd_table(curves, reference).items()},
    }, curves


def _describe(codec) -> dict[str, str]:
    cfg = codec.model.cfg
    return {"name": codec.identity.name, "hash": codec.identity.hash, "config": cfg.name,
            "jd_fusion": cfg.jd_fusion, "entropy_model": cfg.entropy_model}


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v for k, v in values.items()}


def register(subparsers) -> None:
    """Add ``parahydra eval`` to the CLI."""
    p = subparsers.add_parser("eval", help="RD evaluation against classical codecs")
    p.add_argument("--data", type=Path, required=True, help="ROOT/<group>/<view>.png (or --layout)")
    p.add_argument("--layout", default="groups", help="groups, instereo2k, cityscapes, wildtrack")
    p.add_argument("--split", default=None, help="train or test for the dataset layouts")
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: packaged model)")
    p.add_argument("--compare", type=Path, nargs="*", default=[],
                   help="more checkpoints (ablation variants, baselines), curves named after the file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-views", type=int, default=None, help="first N views of each group")
    p.add_argument("--max-groups", type=int, default=None)
    p.add_argument("--anchors", nargs="*", default=list(DEFAULT_ANCHORS))
    p.add_argument("--reference", default="jpeg", help="anchor of the BD numbers")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--anchor-cache", type=Path, default=None,
                   help="folder keeping the classical anchors' results per image and setting, so a "
                        "second checkpoint on the same images does not code them again")
    p.add_argument("--control", action="store_true",
                   help="also decode every view with its partners, with views of another scene, with "
                        "itself and alone (same bitstreams): is the joint gain side information?")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> None:
    import json

    from ..codec.api import ParaHydraCodec

    codec = ParaHydraCodec.load(args.model, device=args.device)
    compared = {path.stem: ParaHydraCodec.load(path, device=args.device) for path in args.compare}
    if len(compared) != len(args.compare) or "parahydra" in compared:
        raise ValueError(f"--compare needs distinct file names other than parahydra.*: {args.compare}")
    groups = load_groups(args.data, args.layout, args.split, args.max_views, args.max_groups)
    anchors = list(dict.fromkeys([*args.anchors, args.reference]))
    report, curves = evaluate(codec, groups, anchors, args.reference, compared, args.anchor_cache)
    report["data"] = str(args.data)
    if args.control:
        from .control import side_view_control

        report["control"] = [_rounded(point.as_dict())
                             for point in side_view_control(codec, [views for _, views in groups])]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if args.plot:
        plot_rd(curves, args.plot, f"{args.data.name}: {len(groups)} groups")
    print_report(report)


def print_report(report: dict[str, Any]) -> None:
    """The BD table, the curves and the side-view control (when run), as text."""
    print(f"model {report['model']['name']} ({report['model']['hash']}), "
          f"{len(report['groups'])} groups, reference {report['reference']}")
    print(f"{'codec':<22}{'BD-rate cubic':>14}{'BD-rate pchip':>14}{'BD-PSNR pchip':>14}")
    for name, row in report["bd"].items():
        print(f"{name:<22}{row['bd_rate_cubic']:>13.2f}%{row['bd_rate_pchip']:>13.2f}%"
              f"{row['bd_psnr_pchip']:>12.2f}dB")
    for name, points in report["curves"].items():
        print(name + ": " + "  ".join(f"{p['bpp']:.3f}bpp/{p['psnr']:.2f}dB" for p in points))
    for label, model in report["compared"].items():
        print(f"compared {label}: {model['name']} ({model['hash']}), fusion {model['jd_fusion']}, "
              f"entropy model {model['entropy_model']}")
    for name, reason in report["skipped_anchors"].items():
        print(f"skipped {name}: {reason}")
    if "control" in report:
        from .control import print_control

        print_control(report["control"])

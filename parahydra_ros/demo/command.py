"""``parahydra demo``: the real pipeline over DDS on this machine, measured and shown.

    parahydra demo [--cameras 3] [--frames 12] [--size 640x480] [--quality 1] [--model CKPT]
                   [--device cpu] [--rate HZ] [--out DIR]
    parahydra demo --source FOLDER              # ROOT/<group>/<view>.png instead of synthetic views
    parahydra demo --bag BAG --topics /left/image_raw,/right/image_raw

Sets nothing up (``make demo`` runs ``scripts/setup.sh`` first). One ``encoder_node`` process
per camera namespace and one joint ``decoder_node`` process, as ``parahydra launch`` starts
them; in this process the camera replay node publishes every camera's ``sensor_msgs/Image``
(a synthetic rig of N cameras moving through one scene, the groups of a folder, or the
camera topics of a rosbag) and a collector takes every latent, reconstruction and
``/diagnostics`` message (``demo/pipeline.py``). The groups are paced by the pipeline itself
(``--rate 0``, no frame dropped) unless ``--rate`` sets a camera rate.

Printed: a table per camera (frames, bits per pixel on the wire, compression ratio against
the raw images and against JPEG at equal PSNR, PSNR and MS-SSIM of the reconstructions,
encode / decoder / capture-to-image latency p50/p95; ``demo/report.py`` defines each).
Written to the output folder (``--out``, default ``out/demo-<timestamp>``):
``side_by_side.png`` (rows: cameras; original | reconstruction | error map),
``rd.png`` (ParaHydra against JPEG on the demo's own images, and the pipeline's point),
``demo.json`` (every number), ``pipeline.yaml`` (the nodes, for ``parahydra launch``),
``logs/`` (every node's output) and, for a folder or bag, ``frames/`` (the views replayed).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CAMERAS = 3
DEFAULT_FRAMES = 12
DEFAULT_SIZE = (640, 480)  # synthetic views; a folder or bag keeps its own size unless --size
#: Groups the replay takes from a folder or bag beyond the measured ones (the warm-up).
EXTRA_GROUPS = 4


def register(subparsers) -> None:
    """Add ``parahydra demo`` to the CLI (ROS and torch are imported when it runs)."""
    p = subparsers.add_parser(
        "demo", help="run the ROS 2 pipeline (cameras, encoders, joint decoder) here and report",
        description="Run the real pipeline over DDS on this machine: a camera replay, one encoder "
                    "process per camera, one joint decoder process; print bits per pixel, compression "
                    "ratios (raw, JPEG at equal PSNR), PSNR, MS-SSIM and latencies per camera, and write "
                    "a side-by-side image, an RD plot and demo.json to the output folder.")
    p.add_argument("--cameras", type=int, default=None,
                   help=f"number of cameras (default {DEFAULT_CAMERAS}; with --bag: the number of --topics)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"groups (instants of every camera) to measure (default {DEFAULT_FRAMES})")
    p.add_argument("--size", type=_size, default=None,
                   help="WxH of the views (default 640x480 synthetic; a folder or bag is resized to it)")
    p.add_argument("--quality", type=int, default=3, help="quality index of every encoder (0 = lowest rate)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: the packaged model)")
    p.add_argument("--device", default="cpu", help="device of every node: cpu, cuda or auto")
    p.add_argument("--rate", type=float, default=0.0,
                   help="groups per second the cameras publish (default 0: as fast as the pipeline "
                        "takes them, nothing dropped)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--source", type=Path, default=None,
                        help="folder of groups ROOT/<group>/<view>.png instead of synthetic views")
    source.add_argument("--bag", type=Path, default=None,
                        help="rosbag2 directory, .mcap, .db3 or ROS 1 .bag to replay (with --topics)")
    p.add_argument("--topics", default=None,
                   help="comma-separated camera topics of --bag (sensor_msgs/Image or CompressedImage)")
    p.add_argument("--rd-groups", type=int, default=1,
                   help="groups of the RD plot (coded offline at three qualities; 0: no RD plot)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    p.add_argument("--out", type=Path, default=None, help="output folder (default out/demo-<timestamp>)")
    p.set_defaults(func=cmd_demo)


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match or min(int(match[1]), int(match[2])) < 16:
        raise argparse.ArgumentTypeError(f"expected WxH of at least 16x16, e.g. 640x480, got {text!r}")
    return int(match[1]), int(match[2])


def cmd_demo(args: argparse.Namespace) -> None:
    from ..errors import UserError
    from .pipeline import PipelineError

    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        run_demo(args)
    except KeyboardInterrupt:
        print("parahydra demo: interrupted; every node stopped", file=sys.stderr)
        raise SystemExit(130) from None
    except PipelineError as error:
        raise UserError(f"the pipeline failed: {error}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """The demo (see the module docstring); returns what ``demo.json`` holds."""
    from ..errors import UserError
    from .pipeline import PipelineSpec, dds_environment

    import torch

    # The report's metrics and RD codec run here; one thread each is far quicker than several
    # fighting over a small, busy computer's cores (the nodes take their own, see PipelineSpec).
    torch.set_num_threads(1)
    began = time.monotonic()
    model = _check_model(args.model, args.quality)
    if args.frames < 1:
        raise UserError("--frames must be at least 1")
    if args.topics and not args.bag:
        raise UserError("--topics goes with --bag")
    out = args.out or Path("out") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: choose another --out")
    cameras, source, size, topics = _prepare_source(args, out)  # writes out/frames for a folder or bag
    out.mkdir(parents=True, exist_ok=True)
    domain, picked = dds_environment()
    print(f"DDS: ROS_DOMAIN_ID={domain}" + (" (picked for this run; export ROS_DOMAIN_ID to choose)" if picked
                                            else "") + f", discovery {os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}")
    spec = PipelineSpec(cameras=tuple(cameras), frames=args.frames, model=str(model), quality=args.quality,
                        device=args.device, source=source, width=size[0], height=size[1], rate=args.rate,
                        seed=args.seed)
    what = "synthetic views" if source == "synthetic" else f"views of {args.bag or args.source}"
    print(f"{len(cameras)} cameras × {args.frames} groups of {size[0]}x{size[1]} {what}, model {model}, "
          f"quality {args.quality}, device {args.device}; output {out}")
    return report(run(spec, out), args, out, began, topics)


def run(spec: Any, out: Path) -> Any:
    """``run_pipeline`` with the demo's messages."""
    from .pipeline import run_pipeline

    return run_pipeline(spec, out, say=lambda text: print(text, flush=True))


def report(results: Any, args: argparse.Namespace, out: Path, began: float,
           topics: dict[str, str] | None = None) -> dict[str, Any]:
    """Print the table; write the side-by-side image, the RD plot and ``demo.json``."""
    from .pipeline import decoder_threads
    from .report import format_table, side_by_side, summarize, write_json

    spec = results.spec
    clock = time.monotonic()
    rows = summarize(results)
    metrics_s = time.monotonic() - clock
    name = results.model.get("name", "?")
    print(f"\nParaHydra over DDS — model {name} ({results.model.get('hash', '?')}), quality {spec.quality}, "
          f"{len(spec.cameras)} cameras, {len(results.stamps)} groups")
    print(format_table(rows))
    per_s = results.groups_complete / results.measure_s if results.measure_s > 0 else math.nan
    print(f"{results.groups_complete} of {len(results.stamps)} groups came back from every camera "
          f"({results.groups_lost} lost); {per_s:.2f} groups/s, start-up {results.startup_s:.1f} s, "
          f"warm-up {results.warmup_s:.1f} s, measured {results.measure_s:.1f} s")
    print(_node_summary(results.diagnostics, len(spec.cameras)))
    if topics:
        print("cameras: " + ", ".join(f"{camera} = {topic}" for camera, topic in topics.items()))
    for row in rows:
        if row.get("jpeg_note"):
            print(f"{row['camera']}: no JPEG ratio: {row['jpeg_note']}")

    files: dict[str, str] = {}
    complete = [i for i in range(len(results.stamps)) if all(results.frames[c][i].complete for c in spec.cameras)]
    if complete:
        index = complete[len(complete) // 2]
        shape = side_by_side([results.frames[c][index] for c in spec.cameras], out / "side_by_side.png")
        files["side_by_side"] = str(out / "side_by_side.png")
    clock = time.monotonic()
    rd = _rd_plot(results, rows, args.rd_groups, args.device, out / "rd.png") if complete else None
    rd_s = time.monotonic() - clock
    if rd is not None:
        files["rd_plot"] = str(out / "rd.png")
    files.update(pipeline=str(out / "pipeline.yaml"), logs=str(out / "logs"))
    payload = {
        "settings": {"cameras": list(spec.cameras), "frames": spec.frames, "width": spec.width,
                     "height": spec.height, "quality": spec.quality, "device": spec.device, "model": spec.model,
                     "source": spec.source, "bag": str(args.bag) if args.bag else None, "topics": topics,
                     "rate": spec.rate, "seed": spec.seed, "encoder_threads": spec.encoder_threads,
                     "decoder_threads": decoder_threads(spec), "partial_deadline": spec.partial_deadline},
        "environment": {"ros_domain_id": results.domain_id,
                        "discovery_range": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"),
                        "rmw": os.environ.get("RMW_IMPLEMENTATION"), "cpu_count": os.cpu_count(),
                        "load_average": list(os.getloadavg())},
        "model": results.model,
        "groups": {"measured": len(results.stamps), "complete": results.groups_complete, "lost": results.groups_lost},
        "timing": {"startup_s": results.startup_s, "warmup_s": results.warmup_s, "measure_s": results.measure_s,
                   "metrics_s": metrics_s, "rd_plot_s": rd_s,
                   "groups_per_s": per_s, "total_s": time.monotonic() - began},
        "cameras": rows,
        "side_by_side": {"stamp_ns": results.stamps[index], "shape": list(shape)} if complete else None,
        "rd": rd,
        "nodes": results.diagnostics,
        "timeline": timeline(results),
        "definitions": _DEFINITIONS,
        "files": files,
    }
    write_json(out / "demo.json", payload)
    print(f"\nwrote {out}/: " + ", ".join(Path(p).name for p in files.values()) + ", demo.json")
    return payload


def _node_summary(diagnostics: dict[str, dict[str, Any]], cameras: int) -> str:
    """One line from the nodes' own /diagnostics: joint decode time, frames and groups dropped."""
    decoder = next((v for k, v in diagnostics.items() if k.endswith("parahydra_decoder")), {})
    encoders = [v for k, v in diagnostics.items() if k.endswith("parahydra_encoder")]
    dropped = sum(v for e in encoders for k, v in e.items() if k.startswith("frames_dropped_") and isinstance(v, int))
    p50, p90 = decoder.get("decode_ms_p50", math.nan), decoder.get("decode_ms_p90", math.nan)
    return (f"nodes: joint decode {p50:.0f} ms p50, {p90:.0f} ms p90 per group of {cameras} views; "
            f"encoders dropped {dropped} frames, decoder {decoder.get('groups_dropped', 0)} groups "
            f"({decoder.get('groups_partial', 0)} decoded without every camera)")


def timeline(results: Any) -> list[dict[str, Any]]:
    """Every measured group: when each camera's latent and reconstruction came back (ms after the stamp)."""
    def ms(ns: int | None, stamp: int) -> float | None:
        return None if ns is None else round((ns - stamp) / 1e6, 1)

    return [{"stamp_ns": stamp, **{camera: {"latent_ms": ms(frame.latent_ns, stamp),
                                            "reconstructed_ms": ms(frame.reconstructed_ns, stamp),
                                            "payload_bytes": frame.payload_bytes}
                                   for camera in results.spec.cameras
                                   for frame in [results.frames[camera][i]]}}
            for i, stamp in enumerate(results.stamps)]


_DEFINITIONS = {
    "bpp": "every byte of the CompressedLatent messages (serialized) x 8 / pixels",
    "payload_bpp": "the ParaHydra payloads alone (container header included) x 8 / pixels",
    "ratio_raw": "serialized sensor_msgs/Image bytes / serialized CompressedLatent bytes",
    "ratio_jpeg": "JPEG bytes at the reconstructions' mean PSNR on the same images / ParaHydra payload bytes",
    "encode_ms": "the encoder's time per frame (CompressedLatent.encode_time_ms)",
    "decoder_ms": "latent received -> reconstruction received (sync wait, queue, joint decode, transport)",
    "latency_ms": "capture stamp -> reconstruction received",
}


def _rd_plot(results: Any, rows: list[dict[str, Any]], groups: int, device: str, path: Path) -> dict[str, Any] | None:
    """Offline RD curves on ``groups`` of the demo's groups, with the pipeline's point; ``None`` if 0."""
    if groups <= 0:
        return None
    from ..codec.api import ParaHydraCodec
    from ..eval.rd import RDPoint
    from ..eval.report import plot_rd
    from .report import rd_curves

    spec = results.spec
    complete = [i for i in range(len(results.stamps)) if all(results.frames[c][i].complete for c in spec.cameras)]
    chosen = [complete[round(k * (len(complete) - 1) / max(1, groups - 1))] for k in range(min(groups, len(complete)))]
    views = [[results.frames[c][i].original for c in spec.cameras] for i in sorted(set(chosen))]
    codec = ParaHydraCodec.load(spec.model, device=device)
    qualities = sorted({0, spec.quality, codec.num_qualities - 1})
    every = rows[-1]
    point = RDPoint(quality=spec.quality, bpp=every["payload_bpp"], psnr=every["psnr"], ms_ssim=every["ms_ssim"])
    label = f"parahydra pipeline (q{spec.quality}, {every['frames']} frames)"
    print(f"RD plot: {len(views)} group(s) coded offline at qualities {qualities} …", flush=True)
    curves = rd_curves(codec, views, qualities, point, label)
    plot_rd(curves, path, f"{results.model.get('name', '')}: {len(spec.cameras)} cameras, "
                          f"{spec.width}x{spec.height}, {len(views)} group(s)")
    return {"groups": len(views), "qualities": qualities,
            "curves": {name: [vars(p) for p in points] for name, points in curves.items()}}


def _check_model(model: Path | None, quality: int) -> Path:
    """The checkpoint to use (``--model`` or the packaged one), checked: one-line errors."""
    from ..errors import UserError
    from ..codec.checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint

    path = (model or DEFAULT_MODEL).expanduser().resolve()
    if not path.is_file():
        if model is None:
            raise UserError(f"the packaged model {path} is missing (train it, see README) — or pass --model CKPT")
        raise UserError(f"--model {model}: no such file")
    try:
        qualities = len(load_checkpoint(path)["config"]["lambdas"])
    except (CheckpointError, KeyError, TypeError) as error:
        raise UserError(f"{path}: not a usable checkpoint: {error}") from None
    if not 0 <= quality < qualities:
        raise UserError(f"--quality {quality}: model {path.name} has qualities 0..{qualities - 1}")
    return path


# -- sources -----------------------------------------------------------------------------------------
def _prepare_source(args: argparse.Namespace, out: Path) -> tuple[list[str], str, tuple[int, int], dict | None]:
    """Camera names, the replay's source, the view size, and (bag) camera → topic."""
    from ..errors import UserError

    if args.bag:
        if not args.topics:
            raise UserError("--bag needs --topics (comma-separated camera topics)")
        topics = [t.strip() for t in args.topics.split(",") if t.strip()]
        if args.cameras is not None and args.cameras != len(topics):
            raise UserError(f"--cameras {args.cameras} but {len(topics)} --topics")
        groups = bag_groups(args.bag, topics, args.frames + EXTRA_GROUPS)
        names = camera_names(topics)
        size = _write_frames(groups, out / "frames", args.size)
        return names, str(out / "frames"), size, dict(zip(names, topics))
    count = DEFAULT_CAMERAS if args.cameras is None else args.cameras
    if count < 1:
        raise UserError("--cameras must be at least 1")
    names = [f"cam{i}" for i in range(count)]
    if args.source:
        from ..ros.camera_replay_node import folder_groups, read_rgb
        from ..ros.runtime import NodeSetupError

        if not args.source.expanduser().is_dir():
            raise UserError(f"--source {args.source}: no such folder")
        try:
            files = folder_groups(args.source.expanduser(), count)[: args.frames + EXTRA_GROUPS]
            groups = [[read_rgb(path) for path in views] for views in files]
        except NodeSetupError as error:
            raise UserError(f"--source: {error}") from None
        size = _write_frames(groups, out / "frames", args.size)
        return names, str(out / "frames"), size, None
    return names, "synthetic", args.size or DEFAULT_SIZE, None


def camera_names(topics: list[str]) -> list[str]:
    """A ROS name per camera topic (its components joined by '_'), unique: '/left/image_raw' → 'left_image_raw'."""
    names: list[str] = []
    for topic in topics:
        name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", topic.strip("/"))).strip("_") or "camera"
        if name[0].isdigit():
            name = f"cam_{name}"
        base, n = name, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def bag_groups(bag: Path, topics: list[str], count: int) -> list[list[Any]]:
    """The first ``count`` complete groups of ``topics`` (one view each, matched by header stamp as
    the decoder matches them), as uint8 RGB / mono pixels. Read by ``parahydra bag``'s reader
    (``bagtools.cameras.camera_groups``)."""
    from contextlib import closing

    from ..bagtools.cameras import camera_groups
    from ..bagtools.errors import BagError
    from ..errors import UserError

    groups: list[list[Any]] = []
    try:
        with closing(camera_groups(bag, topics)) as reading:  # the bag closes when we stop early
            for group in reading:
                if group.complete:
                    groups.append([frame.pixels for frame in group.items])
                if len(groups) >= count:
                    break
    except BagError as error:
        raise UserError(str(error)) from None
    if not groups:
        raise UserError(f"{bag}: no instant where every one of {', '.join(topics)} has a frame")
    return groups


def _write_frames(groups: list[list[Any]], folder: Path, size: tuple[int, int] | None) -> tuple[int, int]:
    """Write ``groups`` as ``folder/<group>/<view>.png`` for the replay (resized to ``size``, or to the
    first view's size when a group's views differ); returns the views' (width, height)."""
    import cv2

    first = groups[0][0]
    width, height = size or (first.shape[1], first.shape[0])
    resized = False
    for g, views in enumerate(groups):
        group = folder / f"group_{g:05d}"
        group.mkdir(parents=True, exist_ok=True)
        for v, view in enumerate(views):
            if view.shape[:2] != (height, width):
                view = cv2.resize(view, (width, height), interpolation=cv2.INTER_AREA)
                resized = True
            pixels = view if view.ndim == 2 else cv2.cvtColor(view, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(group / f"view_{v:03d}.png"), pixels)
    if resized and size is None:
        print(f"views of different sizes: every view resized to {width}x{height} (the first view's)")
    return width, height

"""End-to-end ROS 2 pipeline over DDS on this machine: throughput, latency and bytes on the wire.

    python bench/pipeline.py [--model CKPT] [--cameras 2 3] [--size 640x480] [--frames 12]
                             [--rate 0] [--json out/bench/pipeline.json]
    python bench/pipeline.py --quick --model CKPT     # 4 groups per camera count

For each camera count, the pipeline of ``parahydra demo`` (``parahydra_ros.demo.pipeline.
run_pipeline``: one encoder process per camera, one joint decoder process, the camera replay
and a collector in this process, over DDS) codes ``--frames`` groups of synthetic views at
``--size``, then reports:

* frames per second per camera: reconstructed frames of a camera over the time from the
  first measured capture stamp to the last reconstruction (closed loop by default: a group
  is published as soon as the encoders are done with the last one, so this is the most the
  pipeline sustains here without dropping; ``--rate`` for a fixed camera rate);
* latency capture stamp → reconstruction received, p50 and p95 over every camera's frames;
  the encoder's own time per frame and the decoder's joint decode time per group (its
  ``/diagnostics``), p50;
* bytes per frame: the serialized ``CompressedLatent`` (every byte on the wire), the raw
  ``sensor_msgs/Image``, and JPEG at the same PSNR on the same images (``eval.rd.bpp_at_psnr``
  over the JPEG anchor; ``-`` when the PSNR is outside JPEG's range), and the ratios.

The default model is the packaged one (``parahydra_ros/weights/parahydra_small.pt``). The
machine's load matters on a small computer: the load average at the start is recorded.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json  # noqa: E402

COLUMNS = [
    ("cameras", "cams", "d"), ("size", "size", "s"), ("frames", "frames/cam", "d"),
    ("fps_per_camera", "fps/cam", ".2f"), ("latency_p50_ms", "latency p50 ms", ".0f"),
    ("latency_p95_ms", "p95 ms", ".0f"), ("encode_p50_ms", "encode p50 ms", ".0f"),
    ("decode_p50_ms", "joint decode p50 ms", ".0f"), ("latent_bytes", "latent B/frame", ".0f"),
    ("raw_bytes", "raw B/frame", ".0f"), ("ratio_raw", "x raw", ".0f"),
    ("jpeg_bytes", "JPEG B/frame", ".0f"), ("ratio_jpeg", "x JPEG", ".2f"), ("psnr", "PSNR dB", ".2f"),
]


def measure(cameras: int, size: tuple[int, int], frames: int, model: str, quality: int, device: str,
            rate: float, work: Path) -> dict:
    """One pipeline run of ``cameras`` cameras: the row of the table (and more)."""
    from parahydra_ros.demo.pipeline import PipelineSpec, run_pipeline
    from parahydra_ros.demo.report import summarize

    spec = PipelineSpec(cameras=tuple(f"cam{i}" for i in range(cameras)), frames=frames, model=model,
                        quality=quality, device=device, width=size[0], height=size[1], rate=rate)
    results = run_pipeline(spec, work, say=lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    rows = summarize(results)
    every = rows[-1]
    decoder = next((v for k, v in results.diagnostics.items() if k.endswith("parahydra_decoder")), {})
    per_camera = [len(results.reconstructed(c)) for c in spec.cameras]
    return {
        "cameras": cameras, "size": f"{size[0]}x{size[1]}", "frames": min(per_camera),
        "groups_complete": results.groups_complete, "groups_lost": results.groups_lost,
        "fps_per_camera": sum(per_camera) / len(per_camera) / results.measure_s if results.measure_s else None,
        "latency_p50_ms": every.get("latency_ms", {}).get("p50"),
        "latency_p95_ms": every.get("latency_ms", {}).get("p95"),
        "encode_p50_ms": every.get("encode_ms", {}).get("p50"),
        "decode_p50_ms": decoder.get("decode_ms_p50"),
        "latent_bytes": every.get("latent_bytes_per_frame"), "payload_bytes": every.get("payload_bytes_per_frame"),
        "raw_bytes": every.get("raw_bytes_per_frame"), "ratio_raw": every.get("ratio_raw"),
        "jpeg_bytes": every.get("jpeg_bytes_per_frame"), "ratio_jpeg": every.get("ratio_jpeg"),
        "psnr": every.get("psnr"), "bpp": every.get("bpp"), "model": results.model,
        "startup_s": results.startup_s, "measure_s": results.measure_s, "per_camera": rows,
    }


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the packaged model)")
    parser.add_argument("--cameras", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--size", type=_size, default=(640, 480), help="WxH (default 640x480)")
    parser.add_argument("--frames", type=int, default=None, help="groups per run (default 12; --quick 4)")
    parser.add_argument("--quality", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rate", type=float, default=0.0, help="camera groups/s (default 0: closed loop)")
    parser.add_argument("--quick", action="store_true", help="a short run (4 groups per camera count)")
    parser.add_argument("--json", type=Path, default=Path("out/bench/pipeline.json"))
    args = parser.parse_args(argv)

    import torch

    from parahydra_ros.codec.checkpoint import DEFAULT_MODEL
    from parahydra_ros.demo.pipeline import dds_environment
    from parahydra_ros.demo.report import json_safe

    torch.set_num_threads(1)  # this process only measures; the nodes have the cores
    model = Path(args.model) if args.model else DEFAULT_MODEL
    if not model.is_file():
        print(f"bench/pipeline.py: no model at {model}: pass --model CKPT", file=sys.stderr)
        return 2
    frames = args.frames or (4 if args.quick else 12)
    domain, _ = dds_environment()
    load = os.getloadavg()
    print(f"ROS_DOMAIN_ID={domain}, load average {load[0]:.2f} on {os.cpu_count()} cores", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="parahydra-bench-pipeline-") as tmp:
        for count in args.cameras:
            print(f"{count} cameras, {frames} groups of {args.size[0]}x{args.size[1]} …", file=sys.stderr, flush=True)
            started = time.monotonic()
            rows.append(measure(count, args.size, frames, str(model.resolve()), args.quality, args.device,
                                args.rate, Path(tmp) / f"{count}cams"))
            rows[-1]["wall_s"] = time.monotonic() - started
    print_table(rows, COLUMNS)
    write_json(args.json, {"benchmark": "pipeline", "model": str(model), "quality": args.quality,
                           "device": args.device, "rate": args.rate, "cpu_count": os.cpu_count(),
                           "load_average": list(load), "rows": json_safe(rows)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

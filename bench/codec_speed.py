"""Codec speed: encode and joint-decode time, peak memory, parameters and FLOPs.

For each model configuration and image size, a fresh process (so peak RSS belongs to
that case alone) encodes every view (one frame at a time, and as a stream with two
frames in flight, as the encoder node's ``workers: 2`` does) and jointly decodes groups
of 2/3/6 views, and OpenCV JPEG encodes/decodes the same images in the same process,
side by side. The time of a group is split into the analysis transforms, the entropy
decoding of one view (one thread, model.determinism) and Para-JD.

    python bench/codec_speed.py                       # small and paper, VGA and 720p
    python bench/codec_speed.py --configs small --sizes 640x480 --json out/codec_speed.json

Weights: ``--model CKPT`` for a trained checkpoint; otherwise random weights of the
configuration (speed does not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, multiview_images, print_table, run_worker, write_json  # noqa: E402

COLUMNS = [
    ("config", "config", "s"), ("size", "size", "s"), ("views", "V", "d"),
    ("encode_s", "enc s/view", ".3f"), ("encode_fps", "enc fps", ".1f"),
    ("encode_fps_2w", "enc fps 2 workers", ".1f"),
    ("decode_s", "joint dec s/group", ".3f"), ("decode_gps", "groups/s", ".2f"),
    ("separate_s", "separate dec s", ".3f"), ("analysis_s", "g_a+h_a s", ".3f"),
    ("entropy_dec_s", "entropy dec s/view", ".3f"), ("synthesis_s", "Para-JD s/group", ".3f"),
    ("jpeg_enc_s", "JPEG enc s", ".4f"),
    ("jpeg_dec_s", "JPEG dec s", ".4f"), ("peak_rss_mb", "peak RSS MB", ".0f"),
    ("params_m", "params M", ".2f"), ("enc_gflop", "enc GFLOP/view", ".1f"),
    ("dec_gflop", "dec GFLOP/group", ".1f"),
]


def stream_fps(encode, workers: int, threads: int, frames: int) -> float:
    """Frames per second with ``workers`` frames in flight, as the encoder node's ``workers``
    parameter runs them (each worker on ``threads // workers`` CPU threads)."""
    import torch

    def one(_):
        torch.set_num_threads(max(1, threads // workers))
        return encode()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(workers)))  # warm-up
        start = time.perf_counter()
        list(pool.map(one, range(frames)))
        return frames / (time.perf_counter() - start)


def measure(config: str, height: int, width: int, views: list[int], repeats: int,
            threads: int, model_path: str | None) -> list[dict]:
    """Runs inside the worker process."""
    import cv2
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from parahydra_ros.codec.api import ParaHydraCodec
    from parahydra_ros.codec.checkpoint import ModelIdentity
    from parahydra_ros.codec.images import image_to_tensor
    from parahydra_ros.model.configs import get_config
    from parahydra_ros.model.parahydra import ParaHydra

    torch.set_num_threads(threads)
    if model_path:
        codec = ParaHydraCodec.load(model_path)
    else:
        model = ParaHydra(get_config(config)).eval()
        model.update(force=True)
        codec = ParaHydraCodec(model, ModelIdentity(f"random-{config}", "0" * 16))
    images, origin = multiview_images(max(views), height, width)
    quality = codec.num_qualities // 2
    params = sum(p.numel() for p in codec.model.parameters()) / 1e6

    encode_s = median_time(lambda: codec.encode(images[0], quality), repeats)
    encode_fps_2w = stream_fps(lambda: codec.encode(images[0], quality), 2, threads, 4 * repeats)
    payloads = [codec.encode(image, quality) for image in images]
    # Where the time goes: the analysis transforms (any device, all threads), one view's
    # entropy decoding (one thread, model.determinism) and Para-JD over a group.
    model, x = codec.model, image_to_tensor(images[0])
    with torch.inference_mode():
        analysis_s = median_time(lambda: model.h_a(model.g_a(x)), repeats)
    view = codec.check(payloads[0])
    h = view.header
    entropy_dec_s = median_time(
        lambda: model.decompress_latent(view.z, view.y, h.padded_hw, h.quality), repeats)
    y_hat = model.decompress_latent(view.z, view.y, h.padded_hw, h.quality)[0]
    with FlopCounterMode(display=False, depth=0) as counter:
        codec.encode(images[0], quality)
    enc_gflop = counter.get_total_flops() / 1e9
    ok, jpeg = cv2.imencode(".jpg", images[0], [cv2.IMWRITE_JPEG_QUALITY, 90])
    jpeg_enc = median_time(lambda: cv2.imencode(".jpg", images[0], [cv2.IMWRITE_JPEG_QUALITY, 90]), repeats)
    jpeg_dec = median_time(lambda: cv2.imdecode(jpeg, cv2.IMREAD_COLOR), repeats)

    rows = []
    for count in views:
        group = payloads[:count]
        decode_s = median_time(lambda: codec.decode(group), repeats)
        separate_s = median_time(lambda: codec.decode(group, joint=False), max(1, repeats // 2))
        synthesis_s = median_time(lambda: model.synthesize(y_hat.expand(count, -1, -1, -1)), repeats)
        with FlopCounterMode(display=False, depth=0) as counter:
            codec.decode(group)
        rows.append({
            "config": config, "size": f"{width}x{height}", "views": count, "images": origin,
            "threads": threads, "encode_s": encode_s, "encode_fps": 1 / encode_s,
            "encode_fps_2w": encode_fps_2w,
            "decode_s": decode_s, "decode_gps": 1 / decode_s, "separate_s": separate_s,
            "analysis_s": analysis_s, "entropy_dec_s": entropy_dec_s, "synthesis_s": synthesis_s,
            "jpeg_enc_s": jpeg_enc, "jpeg_dec_s": jpeg_dec, "params_m": params,
            "enc_gflop": enc_gflop, "dec_gflop": counter.get_total_flops() / 1e9,
            "bytes_per_view": sum(map(len, group)) / count,
        })
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for row in rows:
        row["peak_rss_mb"] = peak
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["small", "paper"])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    parser.add_argument("--views", nargs="+", type=int, default=[2, 3, 6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", help="checkpoint (its config replaces --configs)")
    parser.add_argument("--json", type=Path, default=Path("out/bench/codec_speed.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        config, size = args.worker.split("@")
        width, height = map(int, size.split("x"))
        print(json.dumps(measure(config, height, width, args.views, args.repeats, args.threads, args.model)))
        return 0

    configs = ["checkpoint"] if args.model else args.configs
    rows = []
    for config in configs:
        for size in args.sizes:
            arguments = ["--worker", f"{config}@{size}", "--repeats", str(args.repeats if config != "paper" else 1),
                         "--threads", str(args.threads), "--views", *map(str, args.views)]
            rows += run_worker(__file__, arguments + (["--model", args.model] if args.model else []),
                               f"{config} {size}") or []
    print_table(rows, COLUMNS)
    write_json(args.json, {"benchmark": "codec_speed", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

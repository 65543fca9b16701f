"""``parahydra bag``: compress, decompress and inspect the camera topics of ROS bags, without ROS.

    parahydra bag compress IN OUT --cameras /cam0/image_raw,/cam1/image_raw[,…] [--quality Q]
                                  [--model CKPT] [--sync-slop S] [--verify] [--force]
    parahydra bag decompress IN OUT [--model CKPT] [--sync-slop S] [--force]
    parahydra bag info BAG

``compress`` replaces each camera topic (``sensor_msgs/Image`` or ``CompressedImage``)
by a ``parahydra_ros/msg/CompressedLatent`` topic ``<topic>/parahydra`` and copies
every other topic byte for byte; ``decompress`` decodes the latents of each instant
jointly back to ``sensor_msgs/Image`` on ``<topic>`` (``…/compressed`` cameras come
back on the raw topic, see ``bagtools/topics.py``). IN is never written to; OUT is
written as ``OUT.partial-<pid>`` and renamed when complete, so an error or Ctrl-C
leaves no half-written OUT. The work is done in :mod:`parahydra_ros.bagtools`.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from .bagtools.reading import STORAGES
from .codec.container import DEFAULT_MAX_PIXELS
from .errors import positive_int
from .sync import SyncSettings


def register(subparsers) -> None:
    """Add ``parahydra bag`` and its sub-commands to the CLI."""
    bag = subparsers.add_parser("bag", help="compress / decompress / inspect the camera topics of a rosbag")
    sub = bag.add_subparsers(dest="bag_command", required=True)
    sync = SyncSettings()

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("input", type=Path, help="rosbag2 directory, .mcap, .db3 or ROS 1 .bag (never modified)")
        parser.add_argument("output", type=Path, help="rosbag2 directory to write")
        parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the packaged model)")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
        parser.add_argument("--sync-slop", type=float, default=sync.slop,
                            help="most seconds between the header stamps of one group (decoder node's slop)")
        parser.add_argument("--queue-size", type=int, default=sync.queue_size,
                            help="frames per camera waiting for a match (decoder node's queue_size)")
        parser.add_argument("--deadline", type=float, default=sync.deadline,
                            help="seconds of bag time a frame waits for partners before it is grouped partially")
        parser.add_argument("--storage", choices=STORAGES, default=None,
                            help="storage of OUT (default: the input's; MCAP for ROS 1 input)")
        parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    comp = sub.add_parser("compress", help="camera topics → CompressedLatent topics (<topic>/parahydra)")
    common(comp)
    comp.add_argument("--cameras", required=True, action="extend", type=_topic_list,
                      help="comma-separated camera topics (sensor_msgs/Image or CompressedImage)")
    comp.add_argument("--quality", type=int, default=3, help="quality index of the model (0 = lowest rate)")
    comp.add_argument("--keep-bad-frames", action="store_true",
                      help="copy malformed camera messages unchanged into OUTPUT and list them in the "
                           "summary (default: refuse the bag and name the message)")
    comp.add_argument("--verify", action="store_true",
                      help="decode every group jointly and report the PSNR against the input")
    comp.set_defaults(func=cmd_compress)

    dec = sub.add_parser("decompress", help="CompressedLatent topics → sensor_msgs/Image under the original names")
    common(dec)
    dec.add_argument("--separate", action="store_true", help="decode every view alone (no joint decoding)")
    dec.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                     help="latents that declare more pixels than this (height x width) are refused "
                          "as bad messages (default %(default)s = 4096x4096)")
    dec.set_defaults(func=cmd_decompress)

    info = sub.add_parser("info", help="per-topic counts and sizes; model, quality and bpp of latent topics")
    info.add_argument("bag", type=Path)
    info.set_defaults(func=cmd_info)


def _topic_list(text: str) -> list[str]:
    return [topic.strip() for topic in text.split(",") if topic.strip()]


def cmd_compress(args) -> None:
    from .bagtools import compress_bag, format_summary

    with _bag_errors(deferred=True) as stop:
        codec = _load_codec(args)
        summary = compress_bag(args.input, args.output, args.cameras, codec, args.quality, sync=_sync(args),
                               storage=args.storage, force=args.force, verify=args.verify,
                               keep_bad_frames=args.keep_bad_frames,
                               progress=not args.no_progress, stop=stop)
    print(format_summary(summary))


def cmd_decompress(args) -> None:
    from .bagtools import decompress_bag, format_summary

    with _bag_errors(deferred=True) as stop:
        codec = _load_codec(args)
        summary = decompress_bag(args.input, args.output, codec, sync=_sync(args), storage=args.storage,
                                 force=args.force, joint=not args.separate, progress=not args.no_progress,
                                 stop=stop)
    print(format_summary(summary))


def cmd_info(args) -> None:
    from .bagtools.info import bag_info, format_info

    with _bag_errors():
        info = bag_info(args.bag)
    print(format_info(info))


def _load_codec(args):
    from .codec.api import ParaHydraCodec

    return ParaHydraCodec.load(args.model, device=args.device,
                               max_pixels=getattr(args, "max_pixels", DEFAULT_MAX_PIXELS))


def _sync(args) -> SyncSettings:
    return SyncSettings(slop=args.sync_slop, queue_size=args.queue_size, deadline=args.deadline)


@contextmanager
def _bag_errors(deferred: bool = False):
    """Bag errors become the CLI's one-line user errors; Ctrl-C and SIGTERM end the run with one
    line and exit status 130. ``deferred``: a signal only sets the event this yields, which the
    compress and decompress loops check between messages (a second signal stops at once)."""
    from .bagtools.errors import BagError
    from .bagtools.messages import DefinitionNotFound
    from .errors import UserError

    stop = threading.Event()

    def interrupt(signum, frame):
        if stop.is_set() or not deferred:
            raise KeyboardInterrupt
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main_thread else {}
    try:
        yield stop
    except (BagError, DefinitionNotFound) as error:
        raise UserError(str(error)) from error
    except KeyboardInterrupt:
        print("parahydra bag: interrupted; no output was written", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

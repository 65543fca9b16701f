"""``parahydra``: one command, with sub-commands, for everything the package does.

    parahydra encode IMAGE OUT.phyd [--quality Q] [--model CKPT]
    parahydra decode IN_0.phyd [IN_1.phyd …] --out-dir DIR [--separate]
    parahydra info IN.phyd

(``train``, ``eval``, ``bag``, ``launch`` and ``demo`` register themselves from
their own modules.) Errors about the user's input exit with status 2 and one line.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

# Only light modules at the top: `parahydra info` and `--help` run without torch or
# OpenCV (bench/startup.py); the commands that code images import them when they run.
# Ctrl-C while they load (the first ~0.1 s of a command) exits as Ctrl-C does later on.
try:
    from .codec import container
    from .codec.errors import CheckpointError, PayloadError
    from .errors import UserError, positive_int
except KeyboardInterrupt:
    print("parahydra: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

#: Sub-commands that live in their own modules (each has ``register(subparsers)``).
#: Only the module of the command being run is imported, so e.g. ``parahydra launch``
#: does not pay for importing the training code.
_EXTENSIONS = {"train": "parahydra_ros.train", "eval": "parahydra_ros.eval.report",
               "bag": "parahydra_ros.bag", "launch": "parahydra_ros.pipeline.launcher",
               "demo": "parahydra_ros.demo.command"}


def read_image(path: Path):
    """An image file as uint8 RGB (H×W×3) or mono (H×W); a bad file is the user's error."""
    from .codec.images import read_image as read

    try:
        return read(path)
    except ValueError as error:
        raise UserError(str(error)) from None


def write_image(path: Path, image) -> None:
    """Write uint8 RGB or mono as a PNG (or any format OpenCV knows by suffix)."""
    import cv2

    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), pixels):
        raise UserError(f"{path}: could not write image")


def _load_codec(args):
    from .codec.api import ParaHydraCodec

    return ParaHydraCodec.load(args.model, device=args.device,
                               max_pixels=getattr(args, "max_pixels", container.DEFAULT_MAX_PIXELS))


def cmd_encode(args) -> None:
    codec = _load_codec(args)
    image = read_image(args.image)
    payload = codec.encode(image, args.quality)
    if args.output.exists() and not args.force:
        raise UserError(f"{args.output} exists (use --force to overwrite)")
    args.output.write_bytes(payload)
    h, w = image.shape[:2]
    print(f"{args.output}: {len(payload)} bytes, {8 * len(payload) / (h * w):.4f} bpp "
          f"({w}x{h}, quality {args.quality}, model {codec.identity.name})")


def cmd_decode(args) -> None:
    codec = _load_codec(args)
    payloads = [Path(p).read_bytes() for p in args.inputs]
    images = codec.decode(payloads, joint=not args.separate)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, image in zip(args.inputs, images):
        out = args.out_dir / (Path(path).stem + ".png")
        write_image(out, image)
        print(out)


def cmd_info(args) -> None:
    payload = args.input.read_bytes()
    h = container.read_header(payload)
    print(f"file            {args.input}")
    print(f"bytes           {len(payload)}")
    print(f"format version  {container.FORMAT_VERSION}")
    print(f"model           {h.model_name} ({h.model_hash})")
    print(f"quality         {h.quality}")
    print(f"size            {h.width}x{h.height} ({'mono' if h.mono else 'rgb'}), "
          f"padded {h.padded_hw[1]}x{h.padded_hw[0]}")
    print(f"bits per pixel  {8 * len(payload) / (h.height * h.width):.4f}")
    print(f"symbols hash    {h.symbols_hash}")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="checkpoint (default: the packaged model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with ``command`` (the first argument), only that command's
    extension module is imported (all of them for ``--help``)."""
    parser = argparse.ArgumentParser(prog="parahydra", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encode", help="code one image file (one camera view)")
    enc.add_argument("image", type=Path)
    enc.add_argument("output", type=Path)
    enc.add_argument("--quality", type=int, default=3)
    enc.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    _add_model_args(enc)
    enc.set_defaults(func=cmd_encode)

    dec = sub.add_parser("decode", help="jointly decode the coded views of one instant")
    dec.add_argument("inputs", nargs="+", type=Path)
    dec.add_argument("--out-dir", type=Path, required=True)
    dec.add_argument("--separate", action="store_true", help="decode every view alone")
    dec.add_argument("--max-pixels", type=positive_int, default=container.DEFAULT_MAX_PIXELS,
                     help="refuse views that declare more pixels than this (height x width; "
                          "default %(default)s = 4096x4096)")
    _add_model_args(dec)
    dec.set_defaults(func=cmd_decode)

    info = sub.add_parser("info", help="print a coded file's header")
    info.add_argument("input", type=Path)
    info.set_defaults(func=cmd_info)

    for name, module in _EXTENSIONS.items():
        if command in (None, name):
            importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; the exit status: 0, 2 for the user's error, 130 when interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    try:
        args = build_parser(command).parse_args(argv)  # imports the command's module
        args.func(args)
    except (UserError, PayloadError, CheckpointError, FileNotFoundError) as error:
        print(f"parahydra {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C at any point, imports included: one line, no traceback
        print(f"parahydra{f' {command}' if command else ''}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that this module's globals are the package's,
    # not __main__'s copies.
    from parahydra_ros.cli import main as package_main

    sys.exit(package_main())

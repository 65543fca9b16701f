"""Fuzz the decoder with mutated real payloads: every outcome must be a named ``PayloadError``.

    python bench/fuzz_container.py [--cases 2000] [--seed 0] [--model CKPT]   # seeded mutator
    python bench/fuzz_container.py --crafted        # forged sizes: peak RSS and time per payload
    python bench/fuzz_container.py --sweep          # every declared size × strings of 0…N bytes

Real payloads (photographs coded by the model at several sizes and qualities) are
mutated with a seeded generator — bit flips with a stale or recomputed CRC, forged
header fields (size, padding, quality, flags, string lengths) with the CRC recomputed
(a CRC is no authentication: anyone who can publish a payload can recompute it),
truncated, extended, spliced and random strings, trailing bytes — and decoded through
``ParaHydraCodec.decode`` in a worker process under a memory bound. A worker that dies
is a ``crash`` (its signal), one that does not answer in time a ``timeout``, an
exception other than a ``PayloadError`` is ``unexpected:<type>``; any of those makes
the exit status 1. Counts by outcome are printed and written as JSON.

``--crafted`` runs the forged-size payloads of issue 14 (a real ~1 KB payload of a
96×128 view re-stamped to 1024² … 16384², CRC recomputed, and the strongest forgery:
a z string valid for 4096² with the real y string), each in a fresh process, and
reports outcome, wall time and peak RSS. ``--sweep`` declares every padded size up to
``--max-pixels`` against z and y strings of 0…``--max-bytes`` bytes, through the API and,
for a sample of sizes with a z string valid at that size, into the y decoder.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json  # noqa: E402

_HEADER = struct.Struct("<4sBBBB8sHHBB8sII")  # codec/container.py's layout
_FIELDS = ("magic", "version", "flags", "quality", "name_len", "model_hash", "height", "width",
           "pad_bottom", "pad_right", "symbols_hash", "z_len", "y_len")


# -- payloads ------------------------------------------------------------------------------
def split(payload: bytes) -> tuple[dict, bytes, bytes, bytes]:
    """A well-formed payload as (header fields, model name, z string, y string)."""
    fields = dict(zip(_FIELDS, _HEADER.unpack_from(payload)))
    start = _HEADER.size + fields["name_len"]
    z = payload[start:start + fields["z_len"]]
    y = payload[start + fields["z_len"]:start + fields["z_len"] + fields["y_len"]]
    return fields, payload[_HEADER.size:start], z, y


def restamp(payload: bytes, crc: bool = True, **changes) -> bytes:
    """``payload`` with header fields and/or strings (``z=``, ``y=``) replaced; the string
    lengths follow the strings, and the CRC is recomputed unless ``crc=False``."""
    fields, name, z, y = split(payload)
    z, y = changes.pop("z", z), changes.pop("y", y)
    fields.update(z_len=len(z), y_len=len(y))
    fields.update(changes)
    body = _HEADER.pack(*(fields[f] for f in _FIELDS)) + name + z + y
    return body + struct.pack("<I", zlib.crc32(body) if crc else struct.unpack("<I", payload[-4:])[0])


def seed_payloads(codec) -> list[bytes]:
    """Real payloads: crops of photographs, rgb and mono, at the lowest, middle and top quality."""
    import numpy as np
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    qualities = sorted({0, codec.num_qualities // 2, codec.num_qualities - 1})
    payloads = []
    for n, (height, width) in enumerate([(96, 128), (64, 64), (130, 70), (200, 256)]):
        image = np.ascontiguousarray(photos[n % 3][40:40 + height, 60:60 + width])
        if n == 2:
            image = np.ascontiguousarray(image.mean(axis=2).astype(np.uint8))  # mono
        payloads += [codec.encode(image, q) for q in qualities]
    return payloads


def mutate(rng, seeds: list[bytes], max_side: int = 16384) -> tuple[str, bytes]:
    """One mutated payload and the name of its mutation."""
    base = seeds[rng.integers(len(seeds))]
    fields, _, z, y = split(base)
    kind = rng.choice(MUTATIONS)
    if kind == "bitflip-stale-crc" or kind == "bitflip-crc":
        data = bytearray(base)
        for _ in range(int(rng.integers(1, 9))):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        if kind == "bitflip-crc":
            data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
        return kind, bytes(data)
    if kind == "string-bitflip":
        which = "z" if rng.random() < 0.5 else "y"
        string = bytearray(z if which == "z" else y)
        if string:
            string[rng.integers(len(string))] ^= 1 << int(rng.integers(8))
        return kind, restamp(base, **{which: bytes(string)})
    if kind == "size":
        side = lambda: int(min(max_side, 64 * rng.integers(1, max_side // 64 + 1)))  # noqa: E731
        return kind, restamp(base, height=side(), width=side(), pad_bottom=0, pad_right=0)
    if kind == "size-small":
        height, width = int(rng.integers(1, 1025)), int(rng.integers(1, 1025))
        return kind, restamp(base, height=height, width=width, pad_bottom=-height % 64, pad_right=-width % 64)
    if kind == "field":
        name = rng.choice(["quality", "flags", "pad_bottom", "pad_right", "height", "width", "version"])
        limit = {"height": 1 << 16, "width": 1 << 16}.get(name, 256)
        return f"field-{name}", restamp(base, **{name: int(rng.integers(limit))})
    if kind == "truncate-string" or kind == "extend-string":
        which = "z" if rng.random() < 0.5 else "y"
        string = z if which == "z" else y
        if kind == "truncate-string":
            string = string[: int(rng.integers(len(string) + 1))]
        else:
            string = string + rng.bytes(int(rng.integers(1, 64)))
        return f"{kind}-{which}", restamp(base, **{which: string})
    if kind == "random-strings":
        return kind, restamp(base, z=rng.bytes(int(rng.integers(0, 2 * len(z) + 8))),
                             y=rng.bytes(int(rng.integers(0, 2 * len(y) + 8))))
    if kind == "splice":
        other = seeds[rng.integers(len(seeds))]
        _, _, z2, y2 = split(other)
        return kind, restamp(base, **({"z": z2} if rng.random() < 0.5 else {"y": y2}))
    if kind == "truncate":
        return kind, base[: int(rng.integers(len(base)))]
    if kind == "trailing":
        return kind, base + rng.bytes(int(rng.integers(1, 16)))
    raise AssertionError(kind)


MUTATIONS = ["bitflip-stale-crc", "bitflip-crc", "string-bitflip", "size", "size-small", "field",
             "truncate-string", "extend-string", "random-strings", "splice", "truncate", "trailing"]


# -- the worker: decodes what it is sent ----------------------------------------------------
def load_codec(model: str | None, max_pixels: int | None):
    """The codec under test (``max_pixels`` where this version of the API has it)."""
    import inspect

    from parahydra_ros.codec.api import ParaHydraCodec

    if max_pixels is not None and "max_pixels" in inspect.signature(ParaHydraCodec.load).parameters:
        return ParaHydraCodec.load(model, max_pixels=max_pixels)
    return ParaHydraCodec.load(model)


def bound_memory(memory_mb: int) -> None:
    """Address space: what the process has now plus ``memory_mb``."""
    with open("/proc/self/statm") as statm:
        vms = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = vms + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def outcome_of(codec, payload: bytes) -> str:
    """``decoded``, the ``PayloadError`` class name, or ``unexpected:<type>``."""
    from parahydra_ros.codec.errors import PayloadError

    try:
        codec.decode([payload])
        return "decoded"
    except PayloadError as error:
        return type(error).__name__
    except BaseException as error:  # noqa: BLE001 - anything else is a finding
        return f"unexpected:{type(error).__name__}: {str(error)[:200]}"


def worker(args) -> int:
    import torch

    torch.set_num_threads(1)
    codec = load_codec(args.model, args.max_pixels)
    bound_memory(args.memory_mb)
    print("ready", flush=True)
    for line in sys.stdin:
        payload = bytes.fromhex(line.strip())
        start = time.perf_counter()
        outcome = outcome_of(codec, payload)
        print(json.dumps({"outcome": outcome, "decode_s": time.perf_counter() - start,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
    return 0


class Worker:
    """A decoding process fed one payload at a time; restarted after a crash or a timeout."""

    def __init__(self, args=None, **settings):
        """``args`` (the command line's) or ``model``, ``max_pixels``, ``memory_mb``, ``timeout``."""
        defaults = {"model": None, "max_pixels": None, "memory_mb": 3072, "timeout": 120.0}
        self.args = args or argparse.Namespace(**{**defaults, **settings})
        self.process = None

    def start(self) -> None:
        command = [sys.executable, __file__, "--worker", "--memory-mb", str(self.args.memory_mb)]
        if self.args.model:
            command += ["--model", str(self.args.model)]
        if self.args.max_pixels:
            command += ["--max-pixels", str(self.args.max_pixels)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        if self._read(300) != "ready":
            raise RuntimeError("the fuzz worker did not start")

    def run(self, payload: bytes) -> dict:
        """``{"outcome", "decode_s", "peak_rss_mb"}`` of one payload (outcome only if the worker died)."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        try:
            self.process.stdin.write(payload.hex() + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        answer = self._read(self.args.timeout)
        if answer is not None:
            return json.loads(answer)
        if self.process.poll() is None:
            self.stop()
            return {"outcome": "timeout"}
        code = self.process.wait()
        self.process = None
        return {"outcome": f"crash:{signal.Signals(-code).name}" if code < 0 else f"crash:exit {code}"}

    def _read(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        return line.strip() or None

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def fuzz(args) -> dict:
    import numpy as np

    codec = load_codec(args.model, None)
    seeds = seed_payloads(codec)
    rng = np.random.default_rng(args.seed)
    counts: Counter[str] = Counter()
    by_mutation: dict[str, Counter[str]] = {}
    findings = []
    target = Worker(args)
    start = time.perf_counter()
    try:
        for case in range(args.cases):
            kind, payload = mutate(rng, seeds)
            outcome = target.run(payload)["outcome"]
            counts[outcome] += 1
            by_mutation.setdefault(kind, Counter())[outcome] += 1
            if outcome.startswith(("crash", "timeout", "unexpected")):
                findings.append({"case": case, "mutation": kind, "outcome": outcome, "payload": payload.hex()})
    finally:
        target.stop()
    return {"benchmark": "fuzz_container", "seed": args.seed, "cases": args.cases,
            "seconds": time.perf_counter() - start, "counts": dict(counts.most_common()),
            "by_mutation": {k: dict(v) for k, v in sorted(by_mutation.items())}, "findings": findings}


# -- forged sizes, one process each ----------------------------------------------------------
def crafted_cases(codec) -> list[tuple[str, bytes, int | None]]:
    """(name, payload, max_pixels) of the forged-size payloads of issue 14."""
    from skimage import data

    image = data.astronaut()[100:196, 150:278]  # a 96x128 view
    quality = codec.num_qualities // 2
    real = codec.encode(image, quality)
    cases = [(f"real 96x128 ({len(real)} B)", real, None)]
    for side in (1024, 2048, 4096):
        cases.append((f"restamped {side}x{side}", restamp(real, height=side, width=side, pad_bottom=0, pad_right=0),
                      None))
    big = restamp(real, height=16384, width=16384, pad_bottom=0, pad_right=0)
    cases.append(("restamped 16384x16384", big, None))
    cases.append(("restamped 16384x16384, max_pixels 16384^2", big, 16384 * 16384))
    try:  # the strongest forgery: a z string that is valid for 4096x4096, the real y string
        from parahydra_ros.model.latent_codec import encode_hyper_latent
    except ImportError:  # an older version of the package (rANS strings)
        return cases
    eb = codec.model.entropy_bottleneck
    z = eb._get_medians().detach().reshape(1, -1, 1, 1).expand(1, -1, 64, 64).contiguous()
    forged = restamp(real, height=4096, width=4096, pad_bottom=0, pad_right=0,
                     z=encode_hyper_latent(eb, z))
    cases.append(("4096x4096 with a valid z string", forged, None))
    return cases


def crafted_worker(args) -> int:
    """Decode one payload (hex on stdin) and print its outcome and time as JSON."""
    import torch

    torch.set_num_threads(1)
    codec = load_codec(args.model, args.max_pixels)
    payload = bytes.fromhex(sys.stdin.read().strip())
    bound_memory(args.memory_mb)
    start = time.perf_counter()
    outcome = outcome_of(codec, payload)
    print(json.dumps({"outcome": outcome, "decode_s": time.perf_counter() - start}), flush=True)
    return 0


def run_measured(command: list[str], stdin: bytes, timeout: float) -> dict:
    """Run ``command`` fed ``stdin``: its outcome (the JSON it printed, or how it died),
    wall time and peak RSS (``wait4``'s, so a process that crashed is measured too)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err)
        process.stdin.write(stdin)
        process.stdin.close()
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        timer.cancel()
        process.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        row = {"process_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().strip().splitlines()
        if code == 0 and lines:
            row.update(json.loads(lines[-1]))
        elif code < 0:
            row["outcome"] = "timeout" if row["process_s"] >= timeout else f"crash:{signal.Signals(-code).name}"
        else:
            row["outcome"] = f"exit {code}: {err.read().decode()[-300:]}"
        return row


def crafted(args) -> dict:
    codec = load_codec(args.model, None)
    rows = []
    for name, payload, max_pixels in crafted_cases(codec):
        command = [sys.executable, __file__, "--crafted-worker", "--memory-mb", str(args.memory_mb)]
        command += ["--model", str(args.model)] if args.model else []
        command += ["--max-pixels", str(max_pixels or args.max_pixels or 4096 * 4096)]
        row = {"case": name, "bytes": len(payload), "max_pixels": max_pixels or args.max_pixels or 4096 * 4096}
        row.update(run_measured(command, payload.hex().encode(), args.timeout))
        rows.append(row)
        print(f"{name}: {row['outcome']}", file=sys.stderr)
    return {"benchmark": "fuzz_container --crafted", "rows": rows}


# -- every declared size against short strings -------------------------------------------------
def sweep_worker(args) -> int:
    """Run the sweep in this process (the parent only watches it for a crash)."""
    import numpy as np
    import torch

    from parahydra_ros.codec.errors import PayloadError
    from parahydra_ros.model.entropy_coder import EntropyStreamError
    from parahydra_ros.model.latent_codec import encode_hyper_latent

    torch.set_num_threads(1)
    codec = load_codec(args.model, args.max_pixels)
    bound_memory(args.memory_mb)
    base = codec.encode(np.full((64, 64, 3), 128, np.uint8), 0)
    rng = np.random.default_rng(args.seed)
    strings = [b""] + [bytes([fill]) * n for n in range(1, args.max_bytes + 1) for fill in (0, 255)]
    strings += [rng.bytes(n) for n in range(1, args.max_bytes + 1)]
    counts: Counter[str] = Counter()
    limit = args.max_pixels or 4096 * 4096
    sides = range(64, 16385, 64)
    sizes = [(h, w) for h in sides for w in sides if h * w <= limit]
    for h, w in sizes:  # through the API: parse, bound, z decoder
        for string in strings[:: args.stride] + [strings[-1]]:
            for payload in (restamp(base, height=h, width=w, pad_bottom=0, pad_right=0, z=string),
                            restamp(base, height=h, width=w, pad_bottom=0, pad_right=0, y=string)):
                counts[f"api:{outcome_of(codec, payload)}"] += 1
    # Into the y decoder: a z string valid at the declared size, y strings of 0…N bytes.
    eb, model = codec.model.entropy_bottleneck, codec.model
    sample = sorted({sizes[0], sizes[-1], *(sizes[i] for i in rng.integers(len(sizes), size=args.y_sizes))})
    for h, w in sample:
        z = eb._get_medians().detach().reshape(1, -1, 1, 1).expand(1, -1, h // 64, w // 64).contiguous()
        z_string = encode_hyper_latent(eb, z)
        for string in strings[:: args.stride * 4] + [strings[-1]]:
            try:
                model.decompress_latent(z_string, string, (h, w), 0)
                counts["y:decoded"] += 1
            except (EntropyStreamError, PayloadError) as error:
                counts[f"y:{type(error).__name__}"] += 1
    print(json.dumps({"sizes": len(sizes), "y_sizes": [f"{w}x{h}" for h, w in sample],
                      "strings": len(strings), "counts": dict(counts.most_common())}), flush=True)
    return 0


def sweep(args) -> dict:
    command = [sys.executable, __file__, "--sweep-worker", "--memory-mb", str(args.memory_mb),
               "--max-bytes", str(args.max_bytes), "--stride", str(args.stride), "--y-sizes", str(args.y_sizes),
               "--seed", str(args.seed)]
    command += ["--model", str(args.model)] if args.model else []
    command += ["--max-pixels", str(args.max_pixels)] if args.max_pixels else []
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    report = {"benchmark": "fuzz_container --sweep", "seconds": time.perf_counter() - start,
              "returncode": result.returncode}
    if result.returncode < 0:
        report["counts"] = {f"crash:{signal.Signals(-result.returncode).name}": 1}
    elif result.returncode:
        report["counts"] = {f"exit {result.returncode}": 1}
        report["stderr"] = result.stderr[-2000:]
    else:
        report.update(json.loads(result.stdout.strip().splitlines()[-1]))
    return report


def failures(counts: dict) -> int:
    return sum(n for outcome, n in counts.items()
               if outcome.split(":", 1)[-1].startswith(("crash", "timeout", "unexpected", "exit"))
               or outcome.startswith(("crash", "timeout", "unexpected", "exit")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="mutated payloads (fuzz mode)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the packaged model)")
    parser.add_argument("--max-pixels", type=int, default=None, help="decoder's max_pixels (default: the API's)")
    parser.add_argument("--memory-mb", type=int, default=3072,
                        help="address space a decoding process may add once loaded")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case (sweep: in all)")
    parser.add_argument("--crafted", action="store_true", help="forged-size payloads, one process each")
    parser.add_argument("--sweep", action="store_true", help="every declared size against short strings")
    parser.add_argument("--max-bytes", type=int, default=32, help="sweep: longest string")
    parser.add_argument("--stride", type=int, default=1, help="sweep: use every n-th string")
    parser.add_argument("--y-sizes", type=int, default=6, help="sweep: random sizes decoded into the y decoder")
    parser.add_argument("--json", type=Path, default=None)
    for hidden in ("--worker", "--crafted-worker", "--sweep-worker"):
        parser.add_argument(hidden, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.crafted_worker:
        return crafted_worker(args)
    if args.sweep_worker:
        return sweep_worker(args)

    if args.crafted:
        report = crafted(args)
        print_table(report["rows"], [("case", "payload", "s"), ("bytes", "bytes", "d"), ("outcome", "outcome", "s"),
                                     ("decode_s", "decode s", ".2f"), ("process_s", "process s", ".1f"),
                                     ("peak_rss_mb", "peak RSS MB", ".0f")])
        counts = Counter(row["outcome"] for row in report["rows"])
    elif args.sweep:
        report = sweep(args)
        counts = report["counts"]
    else:
        report = fuzz(args)
        counts = report["counts"]
    if not args.crafted:
        print_table([{"outcome": k, "count": v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])],
                    [("outcome", "outcome", "s"), ("count", "count", "d")])
    report["load_average"] = os.getloadavg()
    write_json(args.json or REPO / "out" / "bench" / f"fuzz_container{'_crafted' if args.crafted else '_sweep' if args.sweep else ''}.json", report)
    return 1 if failures(dict(counts)) else 0


if __name__ == "__main__":
    sys.exit(main())

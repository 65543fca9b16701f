"""One prepared run on a lent GPU machine: CUDA correctness, codec speed beside the
paper's table, training throughput, then training until the time is up.

A GPU machine is lent now and then, for minutes worth hours of this CPU, so the run is
prepared here and spent in one command (README, "On a GPU")::

    bash scripts/gpu_prepare.sh          # here: wheels into .whl/; fixtures, recipe, photos into .gpu/
    bash scripts/gpu_run.sh              # there (carry .whl and .gpu): JSON into $OUT as each step ends
    python bench/gpu.py verify DIR       # here, on what came back: CUDA-encoded payloads decode
                                         # on this CPU, the checkpoint loads; prints the tables
    bash scripts/gpu_run.sh --device cpu --minutes 1 --config tiny   # the rehearsal the tests run

``run`` takes the steps in order, each in a process of its own with a time box, so a step
that hangs or crashes is cut off and the next one starts on time; every step rewrites its
JSON after each case it finishes, so a cut-off step still returns what it had. Steps are
forks of the ``run`` process, which imports torch and the codec once (never CUDA):

1. ``correctness.json``: payloads encoded on this CPU (carried in ``.gpu/``) decode on the
   device to the same latent symbols (the container's hash) and to images within ±1 level
   of this CPU's decode (with cuDNN's default TF32 convolutions, and for information in
   strict fp32 and under bf16 autocast); the same views encoded on the device decode on
   the device machine's CPU, and come back base64-encoded for ``verify`` to decode here.
   The entropy-parameter path stays on the CPU in both directions
   (``ParaHydra.to_devices``); only g_a/h_a and Para-JD move.
2. ``speed.json``: ``small`` and ``paper`` at 640×480 and 1920×1080 (WildTrack's frame
   size), groups of 2/3/6 views: encode s/view, joint decode s/group, peak GPU memory, with
   Para-JD in fp32 and under bf16 autocast, beside the paper's table.
3. ``train_speed.json``: training steps/s of ``small`` and ``paper``, single-view and
   multi-view (``bench/train_speed.py``'s stages), under bf16 autocast and in fp32.
4. ``training.json`` and ``<model>-gpu.pt``: the remaining minutes continue the prepared
   recipe (by default the init checkpoint's own recorded ``parahydra train`` command) from
   its weights, through ``parahydra train``'s own code (``cmd_train`` and ``Trainer``),
   batches drawn by worker processes; a float16 checkpoint (saved every minute, and at
   the end) that ``parahydra train --init`` continues here.

``summary.json`` (the environment, each step's status and headline numbers) is rewritten
after every step; ``scripts/gpu_run.sh`` also tees the whole output into ``log.txt``.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import SHARED_DATA, print_table  # noqa: E402

#: The paper's timing table (A30 GPU, WildTrack 1920×1080 groups), printed beside ours.
PAPER_TABLE = [
    {"method": "ParaHydra (paper, A30)", "encode_s": 0.27, "decode_s": 0.33},
    {"method": "LDMIC (paper, A30)", "encode_s": 9.27, "decode_s": 21.43},
]
#: What the run tool may carry (tracked and untracked files, .whl/, .gpu/) and return.
CARRY_LIMIT = 64 * 2**20
RETURN_FILE_LIMIT = 16 * 2**20
#: Seconds of a 9-minute run given to each step before the training, scaled to --minutes and
#: shrunk to leave the training a floor; the training gets the rest, to the end. Every step
#: gets its floor at least: a box is an upper bound, and the CPU rehearsal's steps, which
#: end in seconds on an idle machine, must not be cut off on a loaded one (it overruns then).
BOXES = {"correctness": 50.0, "speed": 190.0, "train_speed": 75.0}
FULL_RUN_S = 540.0
STEP_FLOOR = {"cuda": 15.0, "cpu": 45.0}
#: ``parahydra train`` flags of a recipe that belong to one run, not to the recipe.
RUN_FLAGS = {"--out", "--init", "--threads", "--steps", "--val-every", "--save-every",
             "--device", "--textures"}
RUN_SWITCHES = {"--resume", "--amp"}


@dataclass(frozen=True)
class Plan:
    """What a run measures: the full plan for the GPU, ``tiny`` for the CPU rehearsal."""

    configs: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]  # (width, height)
    views: tuple[int, ...]
    fixtures: tuple[tuple[str, int, int, int, bool, str], ...]  # name, views, width, height, mono, quality
    train_crop: int
    train_stages: tuple[int, ...]  # of bench/train_speed.py's STAGES, for the throughput
    train_batch: int | None  # of the throughput cases (None: bench/train_speed.py's)
    train_warmup_steps: int
    train_timed_steps: int
    train_max_steps: int | None  # None: train until the time is up
    train_validate: bool  # validate before and after the training (tiny: the time is too short)


PLANS = {
    "full": Plan(
        configs=("small", "paper"), sizes=((640, 480), (1920, 1080)), views=(2, 3, 6),
        fixtures=(("vga", 3, 640, 480, False, "default"), ("mono", 2, 330, 250, True, "highest"),
                  ("single", 1, 400, 300, False, "lowest")),
        train_crop=128, train_stages=(0, 1, 2), train_batch=None, train_warmup_steps=2, train_timed_steps=8,
        train_max_steps=None, train_validate=True),
    # The CPU rehearsal: every code path of the full plan, as little work as that allows.
    "tiny": Plan(
        configs=("tiny",), sizes=((128, 64),), views=(2, 3),
        fixtures=(("group", 2, 96, 64, False, "default"), ("mono", 1, 70, 50, True, "highest")),
        train_crop=64, train_stages=(0, 1), train_batch=1, train_warmup_steps=1, train_timed_steps=1,
        train_max_steps=2, train_validate=False),
}


def plan_for(configs: list[str]) -> Plan:
    return PLANS["tiny"] if configs == ["tiny"] else PLANS["full"]


# -- small helpers -------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[gpu {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` atomically (a run killed mid-write leaves the previous version)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True, default=_plain) + "\n")
    tmp.replace(path)


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple, Path)):
        return list(value) if not isinstance(value, Path) else str(value)
    return str(value)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def travelling_bytes() -> int:
    """Bytes of the working tree the run tool sends: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / name.decode()).stat().st_size for name in listed
               if name and (REPO / name.decode()).is_file())


class StepOutput:
    """The JSON file of one step, rewritten as cases finish, and the step's deadline."""

    def __init__(self, path: Path, deadline: float):
        self.path, self.deadline = path, deadline
        self.started = time.time()

    def write(self, payload: dict) -> None:
        payload["seconds"] = round(time.time() - self.started, 2)
        write_json(self.path, payload)

    def left(self) -> float:
        return self.deadline - time.time()


def environment(device: str) -> dict:
    """Versions, threads and the accelerator, as one step's process sees them."""
    import platform

    import compressai
    import numpy
    import torch

    info = {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
        "compressai": getattr(compressai, "__version__", "?"), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": device, "cuda": torch.version.cuda,
    }
    with contextlib.suppress(Exception):  # the legacy TF32 flags may refuse a mix with the new API
        info.update(cudnn_tf32=torch.backends.cudnn.allow_tf32, matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
    return info


# -- what prepare leaves in .gpu/ ----------------------------------------------------------------
class Prepared:
    """The contents of a prepared folder (``manifest.json`` and the files it names)."""

    def __init__(self, folder: Path):
        self.folder = folder
        manifest = read_json(folder / "manifest.json")
        if manifest is None:
            raise SystemExit(f"{folder}/manifest.json missing: run scripts/gpu_prepare.sh (or "
                             f"bench/gpu.py prepare --dir {folder}) first")
        self.manifest = manifest

    def path(self, name: str) -> Path:
        """A path of the manifest: relative to the prepared folder, else to the repository."""
        for root in (self.folder, REPO):
            if (root / name).exists():
                return root / name
        raise FileNotFoundError(f"{name} (neither under {self.folder} nor {REPO})")

    @property
    def model_path(self) -> Path:
        return self.path(self.manifest["model"]["path"])

    @property
    def photos(self) -> Path | None:
        photos = self.manifest.get("photos")
        return self.folder / photos["dir"] if photos else None

    def groups(self) -> list[dict]:
        return self.manifest["fixtures"]

    def read_image(self, name: str):
        import cv2

        image = cv2.imread(str(self.folder / name), cv2.IMREAD_UNCHANGED)
        return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: Path, image) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def compare(images: dict, errors: dict, references: list, originals: list, tolerance: int = 1) -> dict:
    """How far a decoded group is from its reference decode (uint8 levels) and its originals."""
    import numpy as np

    result = {"errors": {str(i): f"{type(e).__name__}: {e}" for i, e in errors.items()},
              "decoded": len(images), "views": len(references)}
    diffs = [np.abs(images[i].astype(np.int16) - references[i].astype(np.int16)) for i in sorted(images)]
    if diffs:
        result.update(
            max_abs_diff=int(max(d.max() for d in diffs)),
            pixels_beyond_tolerance=int(sum((d > tolerance).sum() for d in diffs)),
            mean_abs_diff=float(np.mean([d.mean() for d in diffs])),
            psnr_vs_reference=[psnr(images[i], references[i]) for i in sorted(images)],
            psnr_vs_original=[psnr(images[i], originals[i]) for i in sorted(images)],
        )
    result["within_tolerance"] = not errors and len(images) == len(references) and \
        result.get("max_abs_diff", tolerance + 1) <= tolerance
    return result


def psnr(a, b) -> float:
    """PSNR (dB) between two uint8 images; 99 when they are identical."""
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return round(10 * math.log10(255.0**2 / mse), 3) if mse > 0 else 99.0


# -- prepare (here) ------------------------------------------------------------------------------
def cmd_prepare(args) -> int:
    """Fill ``--dir`` with what a GPU run carries, then report the carried size."""
    import cv2
    import torch

    from parahydra_ros.codec.api import ParaHydraCodec
    from parahydra_ros.codec.checkpoint import DEFAULT_MODEL, load_checkpoint, load_model, save_checkpoint
    from parahydra_ros.data.synthetic import SyntheticRig
    from parahydra_ros.model.configs import get_config
    from parahydra_ros.model.parahydra import ParaHydra

    folder = Path(args.dir).resolve()
    if folder.exists():
        if (folder / "manifest.json").is_file() or not any(folder.iterdir()):
            shutil.rmtree(folder)
        else:
            raise SystemExit(f"{folder} exists and was not made by bench/gpu.py prepare: not touching it")
    folder.mkdir(parents=True)
    plan = plan_for(args.config.split(","))
    manifest: dict = {"created": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "plan": "tiny" if plan is PLANS["tiny"] else "full", "git": _git_state()}

    # The model whose payloads are carried: the packaged one (it travels in the repository),
    # a named checkpoint (copied), or for the rehearsal a tiny model with random weights.
    if plan is PLANS["tiny"]:
        torch.manual_seed(0)
        model = ParaHydra(get_config("tiny")).eval()
        save_checkpoint(folder / "model.pt", model, "parahydra-tiny-random",
                        command="bench/gpu.py prepare --config tiny (random weights)")
        model_path, model_ref = folder / "model.pt", "model.pt"
    elif args.model:
        model_path, model_ref = folder / "model.pt", "model.pt"
        shutil.copyfile(args.model, model_path)
    else:
        model_path, model_ref = DEFAULT_MODEL, str(DEFAULT_MODEL.relative_to(REPO))
    codec = ParaHydraCodec.load(model_path)
    checkpoint = load_checkpoint(model_path)
    manifest["model"] = {"path": model_ref, "name": codec.identity.name, "hash": codec.identity.hash,
                         "config": checkpoint["config"]["name"], "qualities": codec.num_qualities}
    log(f"fixtures: model {codec.identity.name} ({codec.identity.hash}) from {model_ref}")

    # Fixtures: views encoded on this CPU, their originals and this CPU's joint decode.
    last = codec.num_qualities - 1
    qualities = {"default": min(3, last), "highest": last, "lowest": 0}
    manifest["fixtures"] = []
    for name, count, width, height, mono, which in plan.fixtures:
        views, origin = _fixture_views(name, count, height, width, SyntheticRig)
        if mono:
            views = [cv2.cvtColor(view, cv2.COLOR_RGB2GRAY) for view in views]
        quality = qualities[which]
        payloads = [codec.encode(view, quality) for view in views]
        decoded = codec.decode(payloads)
        entries = []
        for i, (view, payload, image) in enumerate(zip(views, payloads, decoded)):
            entry = {"payload": f"fixtures/{name}_{i}.phyd", "original": f"fixtures/{name}_{i}_original.png",
                     "reference": f"fixtures/{name}_{i}_cpu_decode.png"}
            (folder / entry["payload"]).parent.mkdir(parents=True, exist_ok=True)
            (folder / entry["payload"]).write_bytes(payload)
            write_image(folder / entry["original"], view)
            write_image(folder / entry["reference"], image)
            entries.append(entry)
        manifest["fixtures"].append({"name": name, "quality": quality, "width": width, "height": height,
                                     "mono": mono, "origin": origin, "views": entries,
                                     "bytes": [len(p) for p in payloads]})
        log(f"fixture {name}: {count} view(s) {width}x{height}{' mono' if mono else ''} q{quality}, "
            f"{sum(map(len, payloads))} bytes")

    # The training recipe: the init checkpoint's own recorded command, minus what belongs
    # to one run, unless --recipe says otherwise.
    init_path, init_ref = model_path, model_ref
    if args.init:
        init_model, _, init_meta = load_model(args.init)
        init_checkpoint = load_checkpoint(args.init)
        save_checkpoint(folder / "init.pt", init_model, init_checkpoint["name"], half=True,
                        **{k: v for k, v in init_meta.items() if k in ("step", "wall_seconds", "settings",
                                                                        "data", "command", "qualities")})
        init_path, init_ref = folder / "init.pt", "init.pt"
        init_checkpoint = load_checkpoint(init_path)
    else:
        init_checkpoint = checkpoint
    if args.recipe is not None:
        recipe = shlex.split(args.recipe)
        source = "--recipe"
    elif plan is PLANS["tiny"]:
        recipe = ["--config", "tiny", "--data", "mixed", "--views", "1-2", "--batch-size", "2",
                  "--crop", str(plan.train_crop)]
        source = "tiny rehearsal"
    else:
        command = init_checkpoint.get("metadata", {}).get("command")
        if not command:
            raise SystemExit(f"{init_ref} records no training command: give --recipe")
        recipe, source = recipe_from_command(command), command
    manifest["training"] = {"init": init_ref, "args": recipe, "from": source}
    log(f"training recipe (from {source!r}): parahydra train {shlex.join(recipe)} --init {init_ref}")

    # scikit-image's bundled photographs (every texture bank starts with them), in case the
    # machine's scikit-image lacks them.
    from parahydra_ros.data.textures import bundled_photo_paths

    for path in bundled_photo_paths():
        (folder / "skimage_photos").mkdir(exist_ok=True)
        shutil.copyfile(path, folder / "skimage_photos" / path.name)

    # The training photographs, re-encoded (longer side <= max_side, JPEG quality chosen)
    # to fit the carry beside the repository, the wheels and the rest of this folder.
    manifest["photos"] = None
    if args.photos != "none":
        budget = CARRY_LIMIT - args.margin_mb * 2**20 - travelling_bytes() - folder_bytes(REPO / ".whl") \
            - folder_bytes(folder)
        budget = min(budget, args.photo_mb * 2**20)
        manifest["photos"] = _prepare_photos(Path(args.photos), folder / "photos", args.photo_side, budget)
        manifest["photos"]["dir"] = "photos"

    write_json(folder / "manifest.json", manifest)
    sizes = {"repository (tracked + untracked, not ignored)": travelling_bytes(),
             ".whl (wheels)": folder_bytes(REPO / ".whl"), f"{folder.name} (prepared)": folder_bytes(folder)}
    total = sum(sizes.values())
    for name, size in sizes.items():
        log(f"carry: {size / 2**20:6.1f} MiB  {name}")
    log(f"carry: {total / 2**20:6.1f} MiB  in all, of the {CARRY_LIMIT / 2**20:.0f} MiB a run may carry")
    if not (REPO / ".whl").is_dir():
        log("no .whl/: run scripts/fetch_gpu_wheels.py (the GPU machine has no compressai)")
    if total > CARRY_LIMIT:
        log("TOO BIG for the run tool: lower --photo-mb or --photo-side")
        return 1
    return 0


def _fixture_views(name: str, count: int, height: int, width: int, SyntheticRig) -> tuple[list, str]:
    """Real views (the Kermit multi-view set) at 640×480 when present, else a synthetic rig."""
    import cv2

    kermit = SHARED_DATA / "bundler_kermit" / "kermit"
    if (width, height) == (640, 480) and kermit.is_dir():
        paths = sorted(kermit.glob("*.png"))[:count]
        if len(paths) == count:
            return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths], "bundler_kermit"
    seed = int(sha256(name.encode())[:6], 16)
    return list(SyntheticRig(count, height, width).render_group(seed).views), f"synthetic rig (seed {seed})"


def _prepare_photos(source: Path, target: Path, max_side: int, budget: int) -> dict:
    import cv2

    from parahydra_ros.data.folders import IMAGE_SUFFIXES

    if not source.is_dir():
        raise SystemExit(f"no photo folder {source} (give --photos DIR or --photos none)")
    paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        scale = max_side / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images.append((path.relative_to(source).with_suffix(".jpg"), image))
    original = sum(p.stat().st_size for p in paths)
    for quality in (92, 90, 88, 85, 82, 78, 75):
        encoded = [(rel, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
                   for rel, image in images]
        total = sum(len(data) for _, data in encoded)
        if total <= budget:
            break
    else:
        raise SystemExit(f"{len(images)} photos need {total / 2**20:.1f} MiB at JPEG quality 75, "
                         f"{budget / 2**20:.1f} MiB fit: lower --photo-side")
    for rel, data in encoded:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    log(f"photos: {len(encoded)} from {source} ({original / 2**20:.1f} MiB) -> longer side <= {max_side}, "
        f"JPEG quality {quality}: {total / 2**20:.1f} MiB")
    return {"source": str(source), "count": len(encoded), "bytes": total, "source_bytes": original,
            "max_side": max_side, "jpeg_quality": quality}


def recipe_from_command(command: str) -> list[str]:
    """The arguments of a recorded ``parahydra train`` command without those of one run
    (``--out``, ``--init``, ``--resume``, ``--steps``, ``--textures`` …)."""
    words = shlex.split(command)
    if "train" in words:
        words = words[words.index("train") + 1:]
    recipe, i = [], 0
    while i < len(words):
        word = words[i]
        flag = word.split("=", 1)[0]
        if flag in RUN_SWITCHES:
            i += 1
        elif flag in RUN_FLAGS:
            i += 1
            if "=" not in word:  # its value(s): one, or every word up to the next flag (--textures)
                i += 1
                while flag == "--textures" and i < len(words) and not words[i].startswith("--"):
                    i += 1
        else:
            recipe.append(word)
            i += 1
    return recipe


def _git_state() -> dict:
    def git(*a):
        result = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None
    return {"head": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


# -- run (there) ---------------------------------------------------------------------------------
STEPS = ("correctness", "speed", "train_speed", "training")


def cmd_run(args) -> int:
    """Every step in its own time-boxed process; ``summary.json`` after each."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    total = args.minutes * 60
    end = start + total
    scale = total / FULL_RUN_S
    floor = STEP_FLOOR["cuda" if args.device.startswith("cuda") else "cpu"]
    summary = {"command": shlex.join(sys.argv), "minutes": args.minutes, "device": args.device,
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
    forward = ["--dir", args.dir, "--out", str(out), "--device", args.device, "--config", args.config,
               "--train-precision", args.train_precision, "--data-workers", str(args.data_workers)]
    _preload(Path(args.dir))
    for name in STEPS:
        if args.only and name not in args.only:
            continue
        now = time.time()
        if name == "training":
            deadline = max(end, now + floor)
        else:
            deadline = now + max(min(BOXES[name] * scale, end - floor - now), floor)
        grace = 10 if total >= 240 else 5
        log(f"step {name}: {deadline - now:.0f} s")
        status, seconds = _run_step(name, ["step", name, *forward, "--deadline", f"{deadline:.3f}"],
                                    deadline + grace)
        result = read_json(out / f"{name}.json") or {}
        if status != "ok" or "status" not in result:
            result.setdefault("status", status)
            if status != "ok":
                result["status"] = status
            write_json(out / f"{name}.json", result)
        summary["steps"][name] = {"status": result.get("status", status), "seconds": round(seconds, 1),
                                  **_headline(name, result)}
        summary["environment"] = summary.get("environment") or result.get("environment")
        summary["elapsed_s"] = round(time.time() - start, 1)
        write_json(out / "summary.json", summary)
    print_report(out)
    log(f"done in {time.time() - start:.0f} s; results in {out}")
    return 0 if all(s.get("status") == "ok" for s in summary["steps"].values()) else 1


def _preload(prepared: Path) -> None:
    """Import the heavy modules once (torch, compressai, the codec, the training; no CUDA
    yet), so that every step, a fork of this process, starts without importing them again."""
    started = time.time()
    try:
        import cv2
        import torch  # noqa: F401

        # Before OpenCV ever starts its thread pool: a pool inherited by a forked batch worker
        # deadlocks there (cv2.setNumThreads in the child waits for threads the fork did not
        # copy). The steps' image work is small; the batch workers are the parallelism.
        cv2.setNumThreads(1)

        import parahydra_ros.codec.api  # noqa: F401
        import parahydra_ros.data.training  # noqa: F401
        import parahydra_ros.train  # noqa: F401
        import train_speed  # noqa: F401
        from parahydra_ros.data import textures

        try:
            textures.bundled_photo_paths()
        except FileNotFoundError as error:  # this scikit-image lacks them: the carried copies
            carried = [prepared / "skimage_photos" / name for name in textures.SKIMAGE_PHOTOS]
            textures.bundled_photo_paths = lambda: carried
            log(f"{error}; using the copies in {prepared / 'skimage_photos'}")
        textures.TextureBank.default()  # the synthetic rig's photographs, loaded once for every step
        from parahydra_ros.model.configs import get_config
        from parahydra_ros.model.parahydra import ParaHydra

        ParaHydra(get_config("tiny"))  # whatever building a model imports lazily, imported here
    except Exception as error:  # every step will report it in its JSON
        log(f"importing the codec failed: {type(error).__name__}: {error}")
    log(f"imports: {time.time() - started:.1f} s")


def _run_step(name: str, argv: list[str], kill_at: float) -> tuple[str, float]:
    """Run one step in a forked process of its own process group; past ``kill_at`` the whole
    group (the step and its batch workers) is killed."""
    import multiprocessing

    started = time.time()
    sys.stdout.flush()
    sys.stderr.flush()
    process = multiprocessing.get_context("fork").Process(target=_step_process, args=(argv,), name=name)
    process.start()
    process.join(max(1.0, kill_at - time.time()))
    status = None
    if process.is_alive():
        log(f"step {name}: time box over, killed")
        status = "killed at its time box"
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the step, or its leftover workers
        os.killpg(process.pid, signal.SIGKILL)
    process.join()
    if status is None:
        status = "ok" if process.exitcode == 0 else f"exit code {process.exitcode}"
    return status, time.time() - started


def _step_process(argv: list[str]) -> None:
    os.setsid()  # a process group of its own, so that a kill takes its workers too
    sys.exit(main(argv))


def _headline(name: str, result: dict) -> dict:
    if name == "correctness":
        return {"passed": result.get("passed")}
    if name == "speed":
        rows = result.get("rows", [])
        return {"cases": len(rows), "skipped": len(result.get("skipped", []))}
    if name == "train_speed":
        return {"cases": len(result.get("rows", []))}
    if name == "training":
        keys = ("steps", "steps_per_s", "checkpoint")
        return {k: result.get(k) for k in keys if k in result}
    return {}


def cmd_step(args) -> int:
    """One step, inside its own process."""
    out = StepOutput(Path(args.out) / f"{args.name}.json", args.deadline)
    result: dict = {"status": "running", "step": args.name}
    try:
        import torch

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"--device {args.device} but torch {torch.__version__} sees no CUDA device")
        result["environment"] = environment(args.device)
        out.write(result)
        STEP_FUNCTIONS[args.name](args, out, result)
        result["status"] = "ok"
        code = 0
    except Exception as error:  # a step reports its failure in its JSON; the run goes on
        traceback.print_exc()
        result["status"] = f"error: {type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc()[-4000:]
        code = 1
    out.write(result)
    return code


# -- step 1: correctness ------------------------------------------------------------------------
def step_correctness(args, out: StepOutput, result: dict) -> None:
    from parahydra_ros.codec.api import ParaHydraCodec

    prepared = Prepared(Path(args.dir))
    device = ParaHydraCodec.load(prepared.model_path, device=args.device)
    cpu = ParaHydraCodec.load(prepared.model_path, device="cpu") if args.device != "cpu" else device
    if (device.identity.hash, device.identity.name) != (prepared.manifest["model"]["hash"],
                                                        prepared.manifest["model"]["name"]):
        raise RuntimeError("the model differs from the one the fixtures were encoded with")
    result.update(model=prepared.manifest["model"], tolerance_levels=1, groups=[],
                  modes={mode: doc for mode, doc, _ in _decode_modes(args.device)})
    for group in prepared.groups():
        if out.left() < 2:
            result.setdefault("skipped", []).append(group["name"])
            continue
        payloads = [(prepared.folder / v["payload"]).read_bytes() for v in group["views"]]
        references = [prepared.read_image(v["reference"]) for v in group["views"]]
        originals = [prepared.read_image(v["original"]) for v in group["views"]]
        row = {k: group[k] for k in ("name", "quality", "width", "height", "mono")}
        row["views"] = len(payloads)
        # 1. Encoded on the CPU that prepared the run, decoded here on the device.
        for mode, _, context in _decode_modes(args.device):
            with context():
                decoded = device.decode_group(payloads)
            row[f"device_decode_{mode}"] = compare(decoded.images, decoded.errors, references, originals)
        if cpu is not device:
            decoded = cpu.decode_group(payloads)
        row["cpu_decode_here"] = compare(decoded.images, decoded.errors, references, originals)
        # 2. Encoded here on the device, decoded on this machine's CPU (and by `verify`
        #    on the CPU that prepared the run).
        encoded = [device.encode(image, group["quality"]) for image in originals]
        on_device = device.decode_group(encoded)
        on_cpu = cpu.decode_group(encoded) if cpu is not device else on_device
        device_images = [on_device.images.get(i) for i in range(len(encoded))]
        if all(image is not None for image in device_images):
            check = compare(on_cpu.images, on_cpu.errors, device_images, originals)
        else:
            check = {"errors": {str(i): str(e) for i, e in on_device.errors.items()}, "within_tolerance": False}
        row["device_encoded"] = {
            "bytes": [len(p) for p in encoded],
            "bytes_cpu_encoded": [len(p) for p in payloads],
            "identical_to_cpu_encoded": [a == b for a, b in zip(encoded, payloads)],
            "symbols_differing_from_cpu_encoded": [_symbol_difference(cpu, a, b) for a, b in zip(encoded, payloads)],
            "cpu_decode_vs_device_decode": check,
            "cpu_decode_sha256": [sha256(on_cpu.images[i].tobytes()) if i in on_cpu.images else None
                                  for i in range(len(encoded))],
            "payloads_b64": [base64.b64encode(p).decode() for p in encoded],
        }
        row["passed"] = row["device_decode_default"]["within_tolerance"] and check["within_tolerance"]
        result["groups"].append(row)
        log(f"correctness {group['name']}: device decode max diff "
            f"{row['device_decode_default'].get('max_abs_diff')}, device-encoded on CPU "
            f"{'ok' if check['within_tolerance'] else 'FAILED'}")
        out.write(result)
    result["passed"] = bool(result["groups"]) and all(g["passed"] for g in result["groups"]) \
        and not result.get("skipped")


def _decode_modes(device: str) -> list[tuple[str, str, Callable]]:
    modes = [("default", "the decoder node's settings (cuDNN may use TF32 convolutions)", contextlib.nullcontext)]
    if device.startswith("cuda"):
        modes += [("strict_fp32", "TF32 off for convolutions and matmuls", _strict_fp32),
                  ("bf16", "Para-JD under torch.autocast(bfloat16)", _bf16)]
    return modes


@contextlib.contextmanager
def _strict_fp32() -> Iterator[None]:
    import torch

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _bf16():
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16)


def _symbol_difference(codec, a: bytes, b: bytes) -> float:
    """Fraction of latent symbols that differ between two payloads of the same view."""
    if a == b:
        return 0.0
    symbols = []
    for payload in (a, b):
        view = codec.check(payload)
        h = view.header
        symbols.append(codec.model.decompress_latent(view.z, view.y, h.padded_hw, h.quality)[1])
    return float((symbols[0] != symbols[1]).float().mean())


# -- step 2: codec speed -------------------------------------------------------------------------
def step_speed(args, out: StepOutput, result: dict) -> None:
    import torch

    from parahydra_ros.data.synthetic import SyntheticRig

    plan = plan_for(args.config.split(","))
    prepared = Prepared(Path(args.dir))
    result.update(paper_table=PAPER_TABLE, rows=[], skipped=[], images="synthetic rig (real parallax)")
    configs = args.config.split(",")
    # Most wanted first: what robots run (small, VGA), then the paper's setting (paper, 1080p).
    cases = [(c, s) for s in plan.sizes for c in configs]
    if len(plan.sizes) > 1 and "paper" in configs:
        cases.sort(key=lambda case: (case != ("small", plan.sizes[0]), case != ("paper", plan.sizes[-1])))
    images: dict = {}
    for config, (width, height) in cases:
        label = f"{config} {width}x{height}"
        if out.left() < 5:
            result["skipped"].append(label)
            continue
        try:
            if (width, height) not in images:
                images[(width, height)] = SyntheticRig(max(plan.views), height, width).render_group(7).views
            codec, weights = _speed_codec(config, prepared, args.device)
            _measure_codec(codec, config, weights, images[(width, height)], plan.views, args.device, out, result)
        except Exception as error:
            traceback.print_exc()
            result.setdefault("errors", {})[label] = f"{type(error).__name__}: {error}"
        finally:
            codec = None
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        out.write(result)
    print_speed(result)


def _speed_codec(config: str, prepared: Prepared, device: str):
    """The prepared (trained) model when it has this configuration, else random weights
    (speed does not depend on the weights, only the bitrate does)."""
    import torch

    from parahydra_ros.codec.api import ParaHydraCodec
    from parahydra_ros.codec.checkpoint import ModelIdentity
    from parahydra_ros.model.configs import get_config
    from parahydra_ros.model.parahydra import ParaHydra

    if prepared.manifest["model"]["config"] == config:
        codec = ParaHydraCodec.load(prepared.model_path, device=device)
        return codec, f"{codec.identity.name} ({codec.identity.hash})"
    torch.manual_seed(0)
    model = ParaHydra(get_config(config)).eval()
    model.update(force=True)
    return ParaHydraCodec(model, ModelIdentity(f"random-{config}", "0" * 16), device), "random"


def _measure_codec(codec, config: str, weights: str, images: list, views: tuple[int, ...], device: str,
                   out: StepOutput, result: dict) -> None:
    """Append one row per group size to ``result["rows"]`` (written as each one ends)."""
    import numpy as np
    import torch

    from parahydra_ros.codec.images import image_to_tensor

    cuda = device.startswith("cuda")
    model = codec.model
    height, width = images[0].shape[:2]
    quality = codec.num_qualities // 2
    label = f"{config} {width}x{height}"

    def timed(function):
        start = time.perf_counter()
        value = function()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, value

    def reset_peak():
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_mb():
        if cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    warm_s, _ = timed(lambda: codec.encode(images[0], quality))
    reset_peak()
    encode_times, payloads = [], []
    for image in images[:3]:  # timed one at a time (two when slow) ...
        seconds, payload = timed(lambda image=image: codec.encode(image, quality))
        encode_times.append(seconds)
        payloads.append(payload)
        if len(payloads) == 2 and seconds > 1.5:
            break
    encode_peak = peak_mb()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # ... the other views together
        payloads += pool.map(lambda image: codec.encode(image, quality), images[len(payloads):])
    x = image_to_tensor(images[0]).to(next(model.g_a.parameters()).device)
    with torch.inference_mode():
        analysis_s = statistics.median(timed(lambda: model.h_a(model.g_a(x)))[0] for _ in range(3))
    view = codec.check(payloads[0])
    h = view.header
    entropy_s, (y_hat, _) = timed(lambda: model.decompress_latent(view.z, view.y, h.padded_hw, h.quality))
    log(f"speed {label}: encode {statistics.median(encode_times):.3f} s/view (first {warm_s:.2f} s), "
        f"entropy decode {entropy_s:.3f} s/view")
    warmed = set()
    precisions = [("fp32", contextlib.nullcontext)] + ([("bf16", _bf16)] if cuda else [])
    for count in views:
        if out.left() < 3:
            result["skipped"].append(f"{label} V={count}")
            continue
        group = payloads[:count]
        row = {"config": config, "size": f"{width}x{height}", "views": count, "quality": quality,
               "weights": weights, "device": device, "encode_s": statistics.median(encode_times),
               "encode_first_s": warm_s, "encode_peak_mb": encode_peak, "analysis_s": analysis_s,
               "entropy_decode_s": entropy_s, "bytes_per_view": sum(map(len, group)) / count,
               "peak_kind": "cuda max_memory_allocated" if cuda else "process peak RSS"}
        decoded_by = {}
        for precision, context in precisions:
            with context():
                if precision not in warmed:
                    first, _ = timed(lambda: codec.decode(group))
                    row[f"decode_first_s_{precision}"] = first
                    warmed.add(precision)
                reset_peak()
                times = []
                while len(times) < 3:  # three timed decodes, two when slow, one when out of time
                    seconds, decoded = timed(lambda: codec.decode(group))
                    times.append(seconds)
                    if out.left() < 3 or (len(times) == 2 and seconds > 1.5):
                        break
                row[f"decode_s_{precision}"] = statistics.median(times)
                row[f"decode_peak_mb_{precision}"] = peak_mb()
                row[f"synthesis_s_{precision}"] = statistics.median(
                    timed(lambda: model.synthesize(y_hat.expand(count, -1, -1, -1)))[0] for _ in range(3))
            decoded_by[precision] = decoded
            row[f"psnr_{precision}"] = float(np.mean([psnr(a, b) for a, b in zip(decoded, images)]))
        if "bf16" in decoded_by:
            row["bf16_max_abs_diff"] = int(max(np.abs(a.astype(np.int16) - b).max()
                                               for a, b in zip(decoded_by["bf16"], decoded_by["fp32"])))
        result["rows"].append(row)
        log(f"speed {label} V={count}: decode {row['decode_s_fp32']:.3f} s/group fp32"
            + (f", {row['decode_s_bf16']:.3f} bf16" if "decode_s_bf16" in row else "")
            + f", peak {row['decode_peak_mb_fp32']:.0f} MB")
        out.write(result)


SPEED_COLUMNS = [
    ("config", "config", "s"), ("size", "size", "s"), ("views", "V", "d"),
    ("encode_s", "enc s/view", ".3f"), ("decode_s_fp32", "dec s/group fp32", ".3f"),
    ("decode_s_bf16", "dec s/group bf16", ".3f"), ("synthesis_s_fp32", "Para-JD fp32", ".3f"),
    ("synthesis_s_bf16", "Para-JD bf16", ".3f"), ("entropy_decode_s", "entropy dec s/view", ".3f"),
    ("decode_peak_mb_fp32", "peak MB fp32", ".0f"), ("decode_peak_mb_bf16", "peak MB bf16", ".0f"),
    ("psnr_fp32", "PSNR fp32", ".2f"), ("psnr_bf16", "PSNR bf16", ".2f"),
]


def print_speed(result: dict) -> None:
    rows = result.get("rows", [])
    if rows:
        print_table(rows, SPEED_COLUMNS)
    print("the paper's table (A30, WildTrack 1920x1080, per group):")
    for entry in PAPER_TABLE:
        print(f"  {entry['method']:<24} encode {entry['encode_s']:6.2f} s   decode {entry['decode_s']:6.2f} s")


# -- step 3: training throughput ----------------------------------------------------------------
def step_train_speed(args, out: StepOutput, result: dict) -> None:
    import torch

    from train_speed import STAGES

    from parahydra_ros.data.training import TrainingBatches

    plan = plan_for(args.config.split(","))
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.set_autocast_dtype("cuda", torch.bfloat16)  # Trainer's --amp: bf16, not float16
    precisions = ("bf16", "fp32") if cuda else ("fp32",)
    result.update(rows=[], skipped=[], crop=plan.train_crop,
                  note=f"{plan.train_crop}x{plan.train_crop} crops, batches drawn beforehand (as bench/"
                       "train_speed.py does); fp32: PyTorch's defaults (cuDNN convolutions may use TF32)")
    for name, source, views, batch in (STAGES[i] for i in plan.train_stages):
        batch = plan.train_batch or batch
        if out.left() < 5:
            result["skipped"].append(f"{name} V={views}")
            continue
        data = TrainingBatches(source, batch, plan.train_crop, (views, views), num_qualities=4,
                               validation_groups=1)
        batches = [data.batch(step) for step in range(max(2, plan.train_warmup_steps + plan.train_timed_steps))]
        for config in args.config.split(","):
            for precision in precisions:
                label = f"{config} {name} V={views} {precision}"
                if out.left() < 5:
                    result["skipped"].append(label)
                    continue
                try:
                    row = _measure_training(config, name, views, batch, precision, data, batches,
                                            args.device, plan, out)
                    result["rows"].append(row)
                    log(f"train speed {label}: {row['steps_per_s']:.2f} steps/s, "
                        f"{row['groups_per_s']:.1f} groups/s")
                except Exception as error:
                    traceback.print_exc()
                    result.setdefault("errors", {})[label] = f"{type(error).__name__}: {error}"
                finally:
                    if cuda:
                        torch.cuda.empty_cache()
                out.write(result)
    print_table(result["rows"], TRAIN_COLUMNS)


def _measure_training(config, stage, views, batch, precision, data, batches, device, plan, out) -> dict:
    import torch

    from parahydra_ros.train import Trainer, TrainSettings

    cuda = device.startswith("cuda")
    settings = TrainSettings(config=config, steps=10**6, batch_size=batch, crop=plan.train_crop,
                             min_views=views, max_views=views, device=device, amp=precision == "bf16")
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(settings, data, Path(folder))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for x, quality in batches[:plan.train_warmup_steps]:
            trainer.train_step(x, quality)
        warm = time.perf_counter() - start
        steps = plan.train_timed_steps if warm < 4 else 2
        losses = []
        start = time.perf_counter()
        for i in range(steps):
            x, quality = batches[i % len(batches)]
            losses.append(trainer.train_step(x, quality)["loss"])
            if out.left() < 2:
                break
        step_s = (time.perf_counter() - start) / len(losses)
        crop = plan.train_crop
        return {
            "config": config, "stage": stage, "views": views, "batch": batch, "crop": crop,
            "precision": precision, "device": str(trainer.device), "steps": len(losses),
            "warmup_s": warm, "step_s": step_s, "steps_per_s": 1 / step_s, "groups_per_s": batch / step_s,
            "mpx_per_s": batch * views * crop * crop / step_s / 1e6, "loss_finite": all(map(math.isfinite, losses)),
            "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
        }


TRAIN_COLUMNS = [
    ("config", "config", "s"), ("stage", "stage", "s"), ("views", "V", "d"), ("batch", "batch", "d"),
    ("precision", "precision", "s"), ("step_s", "s/step", ".3f"), ("steps_per_s", "steps/s", ".2f"),
    ("groups_per_s", "groups/s", ".1f"), ("mpx_per_s", "Mpx/s", ".2f"), ("peak_mb", "peak MB", ".0f"),
]


# -- step 4: training -----------------------------------------------------------------------------
def step_training(args, out: StepOutput, result: dict) -> None:
    """``parahydra train``'s own code path (``cmd_train``: its parser, data, ``Trainer`` and
    ``--init``) with ``Trainer.run`` replaced by a loop that stops at the deadline."""
    import torch

    from parahydra_ros import train as train_module

    plan = plan_for(args.config.split(","))
    prepared = Prepared(Path(args.dir))
    recipe = prepared.manifest["training"]
    init = prepared.path(recipe["init"])
    cuda = args.device.startswith("cuda")
    precision = args.train_precision if cuda else "fp32"
    if cuda:
        torch.set_autocast_dtype("cuda", torch.bfloat16)  # Trainer's --amp: bf16, not float16
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    run_dir = tempfile.mkdtemp(prefix="parahydra-gpu-train-")
    options = [*recipe["args"], "--steps", str(10**9),  # no learning-rate drop inside so short a run
               "--device", args.device, "--init", recipe["init"]]
    if prepared.photos is not None:
        options += ["--textures", str(prepared.photos.relative_to(prepared.folder.parent))
                    if prepared.folder.parent == REPO else str(prepared.photos)]
    if precision == "bf16":
        options.append("--amp")
    command = shlex.join(["parahydra", "train", "--out", "RUN", *options])
    result.update(recipe=recipe, precision=precision, init=recipe["init"], command=command,
                  photos=prepared.manifest.get("photos"))
    out.write(result)
    argv = ["train", "--out", run_dir, *options]
    argv[argv.index("--init") + 1] = str(init)
    if prepared.photos is not None:
        argv[argv.index("--textures") + 1] = str(prepared.photos)

    Base = train_module.Trainer

    class TimeBoxedTrainer(Base):
        def run(self, command: str, until: int | None = None) -> None:  # command: this process's argv
            _train_until(self, result["command"], out, result, args, plan)

    parser = argparse.ArgumentParser(prog="parahydra")
    train_module.register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(argv)
    train_module.Trainer = TimeBoxedTrainer
    try:
        parsed.func(parsed)
    finally:
        train_module.Trainer = Base


def _train_until(trainer, command: str, out: StepOutput, result: dict, args, plan: Plan) -> None:
    from parahydra_ros.codec.checkpoint import save_checkpoint
    from parahydra_ros.data.prefetch import batches

    cuda = trainer.device.type == "cuda"
    checkpoint = Path(args.out) / f"{trainer.name}-gpu.pt"
    workers = args.data_workers if args.data_workers >= 0 else (min(12, max(1, (os.cpu_count() or 2) - 3))
                                                                if cuda else 1)
    first_step = trainer.step
    result.update(model=trainer.name, config=trainer.cfg.name, first_step=first_step, data_workers=workers,
                  batch=trainer.s.batch_size, crop=trainer.s.crop, views=[trainer.s.min_views, trainer.s.max_views],
                  data=trainer.data.describe(), rows=[])
    start = time.time()
    validation_s = time.perf_counter()
    validate = plan.train_validate and out.left() > 120  # else the minutes go to training
    if validate:
        result["validation_before"] = trainer.validate()
    validation_s = time.perf_counter() - validation_s
    log(f"training {trainer.name}: validation of the init weights took {validation_s:.1f} s")
    out.write(result)

    def save(reason: str) -> None:
        identity = save_checkpoint(
            checkpoint, trainer.model, trainer.name, half=True, step=trainer.step,
            wall_seconds=trainer.wall, settings={k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in vars(trainer.s).items()},
            data=trainer.data.describe(), command=command + "  # on a GPU, by bench/gpu.py",
            qualities=list(trainer.cfg.lambdas), gpu=result.get("environment", {}).get("gpu", "none"))
        size = checkpoint.stat().st_size
        result["checkpoint"] = {"file": checkpoint.name, "bytes": size, "hash": identity.hash,
                                "step": trainer.step, "saved_because": reason,
                                "fits_return_limit": size <= RETURN_FILE_LIMIT}
        out.write(result)

    # Stop early enough for the closing validation and save (measured, with room).
    stop_at = out.deadline - 1.5 * validation_s - 3
    feed = batches(trainer.data, first_step, 2**62, depth=2, workers=workers)
    totals = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "aux": 0.0}
    window, wait_s, loop_start, last_row, last_save = 0, 0.0, time.perf_counter(), time.time(), time.time()
    try:
        while time.time() < stop_at:
            if plan.train_max_steps is not None and trainer.step - first_step >= plan.train_max_steps:
                break
            t0 = time.perf_counter()
            x, quality = next(feed)
            t1 = time.perf_counter()
            metrics = trainer.train_step(x, quality)
            trainer.wall += time.perf_counter() - t0
            wait_s += t1 - t0
            if not math.isfinite(metrics["loss"]):
                result["diverged_at_step"] = trainer.step
                log(f"training: loss {metrics['loss']} at step {trainer.step}; stopping (last checkpoint kept)")
                break
            window += 1
            for key in totals:
                totals[key] += metrics[key]
            if time.time() - last_row > 15 or time.time() >= stop_at:
                row = {"step": trainer.step, "elapsed_s": round(time.time() - start, 1),
                       **{k: v / window for k, v in totals.items()}}
                result["rows"].append(row)
                rate = (trainer.step - first_step) / (time.perf_counter() - loop_start)
                log(f"training step {trainer.step}: loss {row['loss']:.3f} bpp {row['bpp']:.3f} "
                    f"PSNR {row['psnr']:.2f} ({rate:.1f} steps/s)")
                totals = dict.fromkeys(totals, 0.0)
                window, last_row = 0, time.time()
                out.write(result)
            if time.time() - last_save > 60:
                save("periodic")
                last_save = time.time()
    finally:
        feed.close()  # ends its worker processes
    loop_s = time.perf_counter() - loop_start
    steps = trainer.step - first_step
    result.update(steps=steps, last_step=trainer.step, train_loop_s=round(loop_s, 1),
                  steps_per_s=steps / loop_s if loop_s else None,
                  groups_per_s=steps * trainer.s.batch_size / loop_s if loop_s else None,
                  data_wait_fraction=wait_s / loop_s if loop_s else None)
    if "diverged_at_step" not in result:
        if validate:
            result["validation_after"] = trainer.validate()
        save("end")
    name = result.get("checkpoint", {}).get("file", checkpoint.name)
    recipe = shlex.join([a for a in result["recipe"]["args"]])
    result["continue_here"] = (f"parahydra train --out runs/after-gpu {recipe} --textures ../shared/data/train/photos "
                               f"--init {name}")
    log(f"training: {steps} steps in {loop_s:.0f} s ({result['steps_per_s'] or 0:.2f} steps/s, "
        f"data wait {100 * (result['data_wait_fraction'] or 0):.0f} %), checkpoint {name}")


STEP_FUNCTIONS = {"correctness": step_correctness, "speed": step_speed, "train_speed": step_train_speed,
                  "training": step_training}


# -- report and verify (here, on what came back) ------------------------------------------------
def print_report(folder: Path) -> None:
    """The tables of a finished (or cut-off) run."""
    summary = read_json(folder / "summary.json") or {}
    env = summary.get("environment") or {}
    print(f"\n== GPU run: {env.get('gpu', env.get('device', '?'))}, torch {env.get('torch', '?')}, "
          f"{summary.get('elapsed_s', '?')} s")
    for name, step in summary.get("steps", {}).items():
        print(f"  {name:<12} {json.dumps(step, sort_keys=True)}")
    correctness = read_json(folder / "correctness.json") or {}
    for group in correctness.get("groups", []):
        default = group["device_decode_default"]
        print(f"  correctness {group['name']:<7} {group['views']} view(s) q{group['quality']}: device decode of "
              f"CPU payloads max diff {default.get('max_abs_diff')} (errors {len(default['errors'])}); "
              f"strict fp32 {group.get('device_decode_strict_fp32', {}).get('max_abs_diff', '-')}, "
              f"bf16 {group.get('device_decode_bf16', {}).get('max_abs_diff', '-')}; device-encoded on CPU "
              f"{'ok' if group['device_encoded']['cpu_decode_vs_device_decode']['within_tolerance'] else 'FAILED'}")
    speed = read_json(folder / "speed.json")
    if speed:
        print_speed(speed)
    train_speed = read_json(folder / "train_speed.json")
    if train_speed and train_speed.get("rows"):
        print_table(train_speed["rows"], TRAIN_COLUMNS)
    training = read_json(folder / "training.json") or {}
    if training.get("steps") is not None:
        print(f"  training: {training['steps']} steps, {training.get('steps_per_s') or 0:.2f} steps/s, "
              f"checkpoint {training.get('checkpoint', {}).get('file')}; continue here with:\n    "
              f"{training.get('continue_here')}")


def cmd_verify(args) -> int:
    """Decode the device-encoded payloads on this CPU, load the returned checkpoint, print."""
    import numpy as np

    from parahydra_ros.codec.api import ParaHydraCodec

    results = Path(args.results)
    prepared = Prepared(Path(args.dir))
    ok = True
    correctness = read_json(results / "correctness.json")
    if correctness and correctness.get("groups"):
        codec = ParaHydraCodec.load(prepared.model_path)
        fixtures = {g["name"]: g for g in prepared.groups()}
        for group in correctness["groups"]:
            encoded = group["device_encoded"]
            payloads = [base64.b64decode(p) for p in encoded["payloads_b64"]]
            decoded = codec.decode_group(payloads)
            originals = [prepared.read_image(v["original"]) for v in fixtures[group["name"]]["views"]]
            same = [i in decoded.images and sha256(decoded.images[i].tobytes()) == digest
                    for i, digest in enumerate(encoded["cpu_decode_sha256"])]
            psnrs = [round(float(psnr(decoded.images[i], originals[i])), 2) for i in sorted(decoded.images)]
            good = not decoded.errors and len(decoded.images) == len(payloads)
            ok &= good
            print(f"device-encoded {group['name']}: decode on this CPU {'ok' if good else 'FAILED'} "
                  f"{dict(decoded.errors) or ''}; identical to the device machine's CPU decode: {same}; "
                  f"PSNR {psnrs}")
        ok &= bool(correctness.get("passed"))
        print(f"correctness on the device: {'passed' if correctness.get('passed') else 'NOT passed'}")
    else:
        print("no correctness.json groups")
        ok = False
    training = read_json(results / "training.json") or {}
    name = training.get("checkpoint", {}).get("file")
    if name and (results / name).is_file():
        codec = ParaHydraCodec.load(results / name)
        payload = codec.encode(np.full((64, 64, 3), 128, np.uint8), 0)
        codec.decode([payload])
        print(f"checkpoint {name}: {codec.identity.name} ({codec.identity.hash}) loads and codes; step "
              f"{training['checkpoint']['step']}; continue with:\n  {training.get('continue_here')}")
    elif training:
        print("training wrote no checkpoint")
        ok = False
    print_report(results)
    return 0 if ok else 1


# -- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    default_dir = str(REPO / ".gpu")

    p = sub.add_parser("prepare", help="here: fixtures, training recipe and photos into --dir")
    p.add_argument("--dir", default=default_dir)
    p.add_argument("--config", default="small,paper", help="tiny: the CPU rehearsal's model and fixtures")
    p.add_argument("--model", help="checkpoint whose payloads are carried (default: the packaged model)")
    p.add_argument("--init", help="checkpoint the training continues (default: the fixtures' model)")
    p.add_argument("--recipe", help="parahydra train arguments (default: the init checkpoint's own command)")
    p.add_argument("--photos", default=str(SHARED_DATA / "train" / "photos"),
                   help="training photographs to carry (none: no photos)")
    p.add_argument("--photo-side", type=int, default=768, help="longer side of the carried photos")
    p.add_argument("--photo-mb", type=float, default=36, help="most MiB the photos may take")
    p.add_argument("--margin-mb", type=float, default=3, help="MiB of the carry limit left free")
    p.set_defaults(func=cmd_prepare)

    def run_options(p):
        p.add_argument("--dir", default=default_dir, help="the prepared folder")
        p.add_argument("--out", default=os.environ.get("OUT", "out/gpu"))
        p.add_argument("--device", default="cuda")
        p.add_argument("--config", default="small,paper", help="configurations measured (tiny: rehearsal)")
        p.add_argument("--train-precision", choices=("tf32", "fp32", "bf16"), default="tf32",
                       help="of the training step: tf32 (float32 tensors, TF32 convolutions and matmuls), "
                            "fp32 (strict) or bf16 (autocast: the rate terms lose precision)")
        p.add_argument("--data-workers", type=int, default=-1, help="batch workers of the training (-1: auto)")

    p = sub.add_parser("run", help="there: every step, time-boxed, JSON into --out")
    run_options(p)
    p.add_argument("--minutes", type=float, default=9.0)
    p.add_argument("--only", nargs="*", choices=STEPS, help="run only these steps")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("step", help=argparse.SUPPRESS)
    p.add_argument("name", choices=STEPS)
    run_options(p)
    p.add_argument("--deadline", type=float, required=True)
    p.set_defaults(func=cmd_step)

    p = sub.add_parser("verify", help="here: check and print what a run returned")
    p.add_argument("results", help="the folder the run's files came back to")
    p.add_argument("--dir", default=default_dir)
    p.set_defaults(func=cmd_verify)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

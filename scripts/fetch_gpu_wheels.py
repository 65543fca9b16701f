"""Wheels for the GPU machine's Python (3.12, x86-64 manylinux) into ``.whl/`` (ignored; the
GPU run carries it and installs it with ``pip --no-index --no-deps``).

What to fetch is found, not listed: every distribution that the codec core and the
training import here (their modules imported in a fresh interpreter), plus the ``[core]``
pins of requirements.txt, minus what the machine's image already holds (``MACHINE_HAS``),
then their own requirements for that Python, again minus the machine's. Each at the
version installed in ``.venv`` (the pin where there is one), so both machines run the
same code; the machine's own PyTorch, NumPy, OpenCV … stay.

    .venv/bin/python scripts/fetch_gpu_wheels.py [--dest .whl] [--python-version 3.12]
"""
from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Modules the GPU run imports (bench/gpu.py's steps: codec, training, data).
CORE_MODULES = ("parahydra_ros.codec.api", "parahydra_ros.train", "parahydra_ros.data.training",
                "parahydra_ros.loss", "parahydra_ros.data.synthetic")
#: Distributions of the GPU machine's image ('cuda'), as /work/.library/device/KINDS.md read
#: them on 2026-11-17 (torch 2.11, numpy 2.x, Python 3.12.3).
MACHINE_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
PLATFORMS = ["manylinux2014_x86_64", "manylinux1_x86_64",
             *(f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35, 39))]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> set[str]:
    """Distributions whose modules a fresh interpreter holds after importing CORE_MODULES."""
    probe = (
        "import importlib, importlib.metadata as m, json, sys\n"
        "before = set(sys.modules)\n"  # what the interpreter's start-up imported (.pth hooks)
        f"for name in {CORE_MODULES!r}: importlib.import_module(name)\n"
        "owners = m.packages_distributions()\n"
        "tops = {n.split('.')[0] for n in set(sys.modules) - before}\n"
        "print(json.dumps(sorted({d for t in tops for d in owners.get(t, [])})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"importing the codec core failed here:\n{result.stderr[-3000:]}")
    return {normal(d) for d in json.loads(result.stdout.strip().splitlines()[-1])}


def core_pins() -> dict[str, str]:
    """requirements.txt's ``[core]`` lines: normalised name -> version."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.\-\[\]]+)==(\S+).*#\s*\[core\]", line)
        if match:
            pins[normal(match.group(1).split("[")[0])] = match.group(2)
    return pins


def requirements_of(wheel: Path, python_version: str) -> set[str]:
    """Names a wheel requires on the GPU machine's Python (no extras)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement
    environment = {"python_version": python_version, "python_full_version": f"{python_version}.0",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                   "os_name": "posix", "extra": ""}
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    names = set()
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker is None or requirement.marker.evaluate(environment):
                names.add(normal(requirement.name))
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=Path, default=REPO / ".whl")
    parser.add_argument("--python-version", default="3.12")
    args = parser.parse_args()

    pins = core_pins()
    own = {"parahydra-ros", "parahydra_ros"}
    wanted = sorted((imported_distributions() | set(pins)) - MACHINE_HAS - {normal(n) for n in own})
    tmp = Path(tempfile.mkdtemp(prefix=args.dest.name + ".", dir=args.dest.resolve().parent))
    try:
        seen, queue = set(), list(wanted)
        while queue:
            name = queue.pop(0)
            if name in seen:
                continue
            seen.add(name)
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = pins.get(name)
            if version is None:
                sys.exit(f"{name} is needed but neither installed in this venv nor pinned in requirements.txt")
            before = set(tmp.iterdir())
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                       "--implementation", "cp", "--python-version", args.python_version,
                       *(a for p in PLATFORMS for a in ("--platform", p)), "--dest", str(tmp), f"{name}=={version}"]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                sys.exit(f"no wheel of {name}=={version} for Python {args.python_version}:\n{result.stderr[-2000:]}")
            for wheel in set(tmp.iterdir()) - before:
                queue += sorted(requirements_of(wheel, args.python_version) - MACHINE_HAS - seen)
        if args.dest.exists():
            shutil.rmtree(args.dest)
        tmp.rename(args.dest)  # one version of each: a second would stop the install there
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = 0
    for wheel in sorted(args.dest.iterdir()):
        total += wheel.stat().st_size
        print(f"  {wheel.stat().st_size / 2**10:8.1f} KiB  {wheel.name}")
    print(f"  {total / 2**20:8.1f} MiB  in {args.dest} (Python {args.python_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

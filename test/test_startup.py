"""Start-up (issue 14.4): the codec imports only what it uses, ``parahydra info`` needs no torch,
and no command prints torch_geometric's ``torch.jit.script`` FutureWarning.

Each check runs in a fresh interpreter (``sys.modules`` of the test process is not a start).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_the_codec_imports_without_compressais_package_init_and_without_warnings():
    result = _python(
        "import sys, json\n"
        "import parahydra_ros.codec.api\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch_geometric', 'compressai.datasets', "
        "'compressai.zoo', 'compressai.models.google', 'torch._dynamo', 'pandas')}))\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FutureWarning" not in result.stderr
    assert not any(json.loads(result.stdout.splitlines()[-1]).values()), result.stdout


def test_coding_a_view_imports_no_compiler():
    """torch.use_deterministic_algorithms imports torch._inductor (and _dynamo): seconds of CPU
    on the first coded view; model.determinism uses the debug-mode switch instead."""
    result = _python(
        "import sys, numpy as np\n"
        "from parahydra_ros.codec.api import ParaHydraCodec\n"
        "codec = ParaHydraCodec.load()\n"
        "payload = codec.encode(np.full((64, 96, 3), 120, np.uint8), 2)\n"
        "codec.decode([payload])\n"
        "import torch\n"
        "print('torch._dynamo' in sys.modules, torch.are_deterministic_algorithms_enabled())\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False"]  # and the switch is restored afterwards


def test_the_compressai_stubs_stay_transparent():
    """Code that wants the whole package still gets it (then paying its import)."""
    result = subprocess.run([sys.executable, "-c",
                             "import parahydra_ros.model, compressai\n"
                             "from compressai.models import Cheng2020Anchor\n"
                             "from compressai.latent_codecs import LatentCodec, HyperLatentCodec\n"
                             "from compressai import ans\n"
                             "print(compressai.__version__, compressai.get_entropy_coder(), "
                             "Cheng2020Anchor.__name__, ans.__name__)\n"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1.2.8", "ans", "Cheng2020Anchor", "compressai.ans"]


def test_parahydra_info_needs_neither_torch_nor_opencv(tmp_path):
    from parahydra_ros.codec import container

    header = container.ViewHeader(model_name="m", model_hash="0" * 16, quality=1, height=48, width=64,
                                  pad_bottom=16, pad_right=0, mono=False, symbols_hash="1" * 16)
    path = tmp_path / "x.phyd"
    path.write_bytes(container.pack(container.CodedView(header, b"z" * 8, b"y" * 8)))
    result = _python("import sys\nfrom parahydra_ros.cli import main\n"
                     f"code = main(['info', {str(path)!r}])\n"
                     "print('loaded', 'torch' in sys.modules, 'cv2' in sys.modules)\n"
                     "sys.exit(code)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "64x48" in result.stdout and "loaded False False" in result.stdout
    assert result.stderr == ""


def test_startup_benchmark_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_startup", REPO / "bench" / "startup.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "startup.json"
    assert bench.main(["--repeats", "1", "--cases", "python", "parahydra info X.phyd", "--importtime", "3",
                       "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {row["case"]: row for row in report["rows"]}
    assert rows["parahydra info X.phyd"]["future_warning"] == "False"
    assert rows["parahydra info X.phyd"]["modules"] < 400  # no torch: ~1,200 modules
    assert len(report["importtime"]) == 3 and np.isfinite(rows["python"]["cpu_median_s"])

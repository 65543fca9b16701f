"""Start-up cost: import times, ``parahydra info`` and loading the codec, each in fresh processes.

    python bench/startup.py [--repeats 5] [--json out/bench/startup.json] [--importtime 15]

Every case runs ``--repeats`` times in a new interpreter; the table gives the wall time
(min / median / max) and the CPU time (user + system, from ``wait4``) of the whole
process, how many modules it ended with (what Python tears down at exit too) and
whether it printed a FutureWarning. Wall time on a shared machine swings with the
load (recorded in the JSON); the CPU time is steadier. ``--importtime`` adds the
slowest imports of the codec (``python -X importtime``, cumulative).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_MODULES = "import atexit, sys; atexit.register(lambda: print('modules', len(sys.modules), file=sys.stderr))"

CASES = {
    "python": "pass",
    "import torch": "import torch",
    "import compressai (whole package)": "import compressai",
    "import parahydra_ros.codec.api": "import parahydra_ros.codec.api",
    "parahydra info X.phyd": "from parahydra_ros.cli import main; import sys; sys.exit(main(['info', {payload!r}]))",
    "ParaHydraCodec.load()": "from parahydra_ros.codec.api import ParaHydraCodec; ParaHydraCodec.load()",
}
COLUMNS = [("case", "case", "s"), ("wall_min_s", "wall min s", ".2f"), ("wall_median_s", "median", ".2f"),
           ("wall_max_s", "max", ".2f"), ("cpu_median_s", "CPU s (median)", ".2f"), ("modules", "modules", "d"),
           ("future_warning", "FutureWarning", "s")]


def run_once(code: str) -> dict:
    """One fresh interpreter running ``code``: wall and CPU seconds, modules, warnings."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen([sys.executable, "-c", f"{_MODULES}\n{code}"], stdout=subprocess.DEVNULL,
                                   stderr=err, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if process.returncode not in (0, 2):
        raise RuntimeError(f"{code!r} exited {process.returncode}:\n{stderr[-1500:]}")
    modules = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("modules ")]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "modules": modules[-1] if modules else None,
            "future_warning": "FutureWarning" in stderr, "exit": process.returncode}


def make_payload(directory: Path) -> Path:
    """A coded view of the packaged model, written by the code under test."""
    path = directory / "view.phyd"
    code = ("import numpy as np; from skimage import data; from parahydra_ros.codec.api import ParaHydraCodec;"
            f"open({str(path)!r}, 'wb').write(ParaHydraCodec.load().encode(data.astronaut()[:96, :128], 3))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)
    return path


def importtime(top: int) -> list[dict]:
    """The ``top`` slowest imports of the codec, cumulative microseconds (``-X importtime``)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import parahydra_ros.codec.api"],
                            capture_output=True, text=True, cwd=REPO)
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
            rows.append({"module": name.strip(), "self_s": int(self_us) / 1e6,
                         "cumulative_s": int(cumulative_us) / 1e6})
    return sorted(rows, key=lambda r: -r["cumulative_s"])[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--importtime", type=int, default=15, help="slowest imports to list (0: none)")
    parser.add_argument("--json", type=Path, default=REPO / "out" / "bench" / "startup.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        payload = make_payload(Path(tmp)) if "parahydra info X.phyd" in args.cases else None
        load_before = os.getloadavg()
        rows = []
        for case in args.cases:
            runs = [run_once(CASES[case].format(payload=str(payload))) for _ in range(args.repeats)]
            walls = [r["wall_s"] for r in runs]
            rows.append({"case": case, "wall_min_s": min(walls), "wall_median_s": statistics.median(walls),
                         "wall_max_s": max(walls), "cpu_median_s": statistics.median(r["cpu_s"] for r in runs),
                         "modules": runs[-1]["modules"], "future_warning": str(any(r["future_warning"] for r in runs)),
                         "runs": runs})
            print(f"done {case}", file=sys.stderr)
    print_table(rows, COLUMNS)
    slow = importtime(args.importtime) if args.importtime else []
    if slow:
        print()
        print_table(slow, [("module", "slowest imports of the codec", "s"), ("cumulative_s", "cumulative s", ".2f"),
                           ("self_s", "self s", ".2f")])
    write_json(args.json, {"benchmark": "startup", "python": sys.version.split()[0], "cpus": os.cpu_count(),
                           "load_average_before": load_before, "load_average_after": os.getloadavg(),
                           "repeats": args.repeats, "rows": rows, "importtime": slow})
    return 0


if __name__ == "__main__":
    sys.exit(main())

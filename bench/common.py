"""Shared helpers of the benchmarks: test images, timing, result tables."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def multiview_images(num_views: int, height: int, width: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Views of one instant: the real 640×480 Kermit multi-view set when it fits, else
    a synthetic rig (textured planes, real parallax). Returns the images and their origin."""
    kermit = SHARED_DATA / "bundler_kermit" / "kermit"
    if (height, width) == (480, 640) and kermit.is_dir() and num_views <= 11:
        import cv2

        paths = sorted(kermit.glob("*.png"))[:num_views]
        return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths], "bundler_kermit"
    from parahydra_ros.data.synthetic import SyntheticRig

    return list(SyntheticRig(num_views, height, width).render_group(seed).views), "synthetic rig"


def median_time(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``function`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> None:
    """Rows as an aligned text table; ``columns`` are (key, title, format)."""
    cells = [[title for _, title, _ in columns]]
    for row in rows:
        cells.append([format(row[key], fmt) if row.get(key) is not None else "-" for key, _, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


def run_worker(script: str, arguments: Sequence[str], label: str) -> list | dict | None:
    """Run one case of ``script`` in a fresh process (``--worker …``) and return the JSON it
    printed last; on failure, report ``label`` and the end of its stderr and return None."""
    result = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True)
    if result.returncode:
        print(f"{label} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
        return None
    print(f"done {label}", file=sys.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])

"""Stopping a launched pipeline: how long each node takes to exit after SIGINT, and how it exits.

    python bench/shutdown.py [--cameras 3] [--size 640x480] [--rate 10] [--model CKPT]
                             [--repeats 1] [--json out/bench/shutdown.json]

Each case starts ``parahydra launch`` (the project's launcher: one process per node) with
``--stop-timeout 5``, which is what ``ros2 launch`` does (SIGINT, 5 s, SIGTERM, 5 s,
SIGKILL), waits until every node has logged that it is ready, and stops it:

* ``idle``: no camera images; one SIGINT to the launcher (it forwards SIGINT to every node);
* ``busy``: the camera replay publishes ``--size`` images at ``--rate`` Hz, so the encoders
  and the joint decoder are inside torch ops when the signal comes; one SIGINT to the launcher;
* ``busy, Ctrl-C twice``: as a terminal's Ctrl-C under ``ros2 launch`` (nodes share its
  process group): SIGINT to every node and to the launcher at once, and again 0.1 s later.

Per case: seconds from starting the launcher until the last node logged that it is ready
(imports, model load, DDS set-up). Per node: seconds from the first SIGINT to the process's
end (polled every 10 ms), its exit status (0 = clean; −6 would be the abort a second SIGINT used to cause), and whether the
launcher had to escalate to SIGTERM. Target (issue 14): every node ≤ 2 s, never an abort.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CASES = ("idle", "busy", "busy, Ctrl-C twice")
COLUMNS = [("case", "case", "s"), ("ready_s", "pipeline ready s", ".1f"), ("node", "node", "s"),
           ("exit_s", "exit s after SIGINT", ".2f"),
           ("status", "exit status", "d"), ("sigterm", "SIGTERM needed", "s")]
READY_MARKS = ("]: camera ", "]: decoding ", "]: publishing ")  # each node's start-up line


def _pipeline_file(folder: Path, cameras: int, size: tuple[int, int], rate: float, model: str | None,
                   replay: bool) -> Path:
    config = {"model": model or "", "quality": 3, "device": "cpu",
              "cameras": [{"name": f"cam{i}"} for i in range(cameras)],
              "decoder": {"device": "cpu"},
              "replay": {"enabled": replay, "source": "synthetic", "rate": rate, "width": size[0],
                         "height": size[1]}}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def run_case(case: str, folder: Path, cameras: int, size: tuple[int, int], rate: float, model: str | None,
             settle_s: float, timeout_s: float = 120.0) -> list[dict]:
    """One launch, stopped as ``case`` says; a row per node."""
    import psutil

    replay = case != "idle"
    config = _pipeline_file(folder, cameras, size, rate, model, replay)
    log_path = folder / f"{case.replace(' ', '_').replace(',', '')}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.time()
    with open(log_path, "w") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "parahydra_ros.cli", "launch", str(config),
                                     "--stop-timeout", "5"], cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
    expected = cameras + 1 + int(replay)
    deadline = time.monotonic() + timeout_s
    try:
        while sum(log_path.read_text().count(mark) for mark in READY_MARKS) < expected:
            if launcher.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{case}: the pipeline did not come up:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        time.sleep(settle_s)  # busy: images flowing through every node
        nodes = {p.pid: " ".join(p.cmdline()).split(" -m ")[1].split()[0].rsplit(".", 1)[-1]
                 for p in psutil.Process(launcher.pid).children()}
        start = time.monotonic()
        if case.endswith("twice"):
            for pid in nodes:
                os.kill(pid, signal.SIGINT)
        launcher.send_signal(signal.SIGINT)
        ended: dict[int, float] = {}
        second_sent = False
        while len(ended) < len(nodes) and time.monotonic() - start < 15:
            now = time.monotonic()
            if case.endswith("twice") and not second_sent and now - start >= 0.1:
                for pid in set(nodes) - set(ended):
                    os.kill(pid, signal.SIGINT)
                second_sent = True
            for pid in nodes:
                if pid not in ended and _exited(pid):
                    ended[pid] = now - start
            time.sleep(0.01)
        launcher.wait(30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    text = log_path.read_text()
    statuses = _statuses(text)
    ready_s = max(float(line.split("[", 2)[2].split("]", 1)[0]) for line in text.splitlines()
                  if any(mark in line for mark in READY_MARKS)) - started
    rows = []
    for pid, name in sorted(nodes.items(), key=lambda item: item[1]):
        rows.append({"case": case, "ready_s": ready_s, "node": name, "pid": pid, "exit_s": ended.get(pid, float("nan")),
                     "status": statuses.get(pid, 0), "sigterm": "yes" if "SIGTERM" in text else "no",
                     "aborted": "terminate called" in text or "Aborted" in text})
    return rows


def _statuses(text: str) -> dict[int, int]:
    """Non-zero exit statuses the launcher reported, by pid (its log names label and pid)."""
    pids = {}
    for line in text.splitlines():
        if "[launch] started " in line and "(pid " in line:
            label = line.split("[launch] started ", 1)[1].rsplit(" (pid ", 1)[0]
            pids[label] = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
    statuses = {}
    for line in text.splitlines():
        if " ended with status " in line or " exited with status " in line:
            label, code = line.split("[launch] ", 1)[1].rsplit(" with status ", 1)
            label = label.rsplit(" ", 1)[0]
            if label in pids and code.strip().lstrip("-").isdigit():
                statuses[pids[label]] = int(code)
    return statuses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the replayed images")
    p.add_argument("--rate", type=float, default=10.0, help="replay rate, Hz")
    p.add_argument("--model", default=None, help="checkpoint (default: the packaged model)")
    p.add_argument("--settle", type=float, default=6.0, help="seconds of images before the signal")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cases", nargs="*", choices=CASES, default=list(CASES))
    p.add_argument("--json", type=Path, default=Path("out/bench/shutdown.json"))
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="parahydra-shutdown-") as tmp:
        for case in args.cases:
            for _ in range(args.repeats):
                rows += run_case(case, Path(tmp), args.cameras, (width, height), args.rate, args.model,
                                 args.settle if case != "idle" else 1.0)
    print_table(rows, COLUMNS)
    worst = max((r["exit_s"] for r in rows), default=float("nan"))
    aborted = any(r["aborted"] or r["status"] not in (0, -signal.SIGINT) for r in rows)
    print(f"slowest node exit {worst:.2f} s after SIGINT (target 2 s); median "
          f"{statistics.median(r['exit_s'] for r in rows):.2f} s; "
          f"{'an unclean exit' if aborted else 'every exit clean'}")
    write_json(args.json, {"cameras": args.cameras, "size": args.size, "rate": args.rate, "model": args.model,
                           "load_average": os.getloadavg(), "rows": rows})
    return 1 if aborted else 0


if __name__ == "__main__":
    sys.exit(main())

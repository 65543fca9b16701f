"""``parahydra launch CONFIG.yaml``: a pipeline's nodes as processes, like ``ros2 launch``.

``launch`` and ``ros2 launch`` are not on PyPI; this starts the nodes that
``launch/pipeline.launch.py`` starts, from the same YAML through the same parser
(``pipeline.config.load_pipeline``), one process per node::

    python -m parahydra_ros.ros.encoder_node --ros-args -r __node:=parahydra_encoder \\
        -r __ns:=/cam0 --params-file /tmp/…/cam0.parahydra_encoder.yaml -r image:=/cam0/image

Each node's parameters go in a ROS 2 params file (``/**: ros__parameters: …``),
as ``launch_ros`` writes them. The children run in their own sessions and die with
the launcher (``PR_SET_PDEATHSIG``). SIGINT or SIGTERM to the launcher (Ctrl-C)
is forwarded as SIGINT; nodes still running ``--stop-timeout`` seconds later get
SIGTERM, then SIGKILL; a second signal skips to the next step. A node that exits
with an error stops the pipeline; the exit status is 0 when every node ended
cleanly, 1 otherwise.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """One started process."""

    label: str
    argv: list[str]
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid


def _prepare_child() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Let the child receive the SIGINT that asks it to stop, and (Linux) SIGTERM it when the
    launcher dies, even by SIGKILL (no orphans).

    A launcher started in the background of a script inherits SIGINT *ignored* (POSIX shells
    do that to asynchronous commands), and so would its nodes — Python then installs no
    KeyboardInterrupt handler and every stop would escalate to SIGTERM.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _say(text: str) -> None:
    print(f"[launch] {text}", file=sys.stderr, flush=True)


class ProcessGroup:
    """Starts commands, watches them, and stops them all: SIGINT, then SIGTERM, then SIGKILL."""

    def __init__(self, stop_timeout: float = 5.0, env: Mapping[str, str] | None = None) -> None:
        self.stop_timeout = stop_timeout
        self.env = dict(os.environ if env is None else env)
        self.children: list[Child] = []
        self._signals = 0
        self.failed: list[str] = []

    def start(self, label: str, argv: Sequence[str], output: Any = None) -> Child:
        """Start ``argv``; ``output`` (an open file), when given, takes its stdout and stderr."""
        process = subprocess.Popen(
            list(argv), env=self.env, start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=output, stderr=None if output is None else subprocess.STDOUT,
            preexec_fn=_prepare_child if os.name == "posix" else None)
        child = Child(label, list(argv), process)
        self.children.append(child)
        _say(f"started {label} (pid {process.pid})")
        return child

    def alive(self) -> list[Child]:
        return [c for c in self.children if c.process.poll() is None]

    def on_signal(self, signum: int, frame: object) -> None:
        """Signal handler: count the request; the loops below act on it."""
        self._signals += 1
        _say(f"received {signal.Signals(signum).name}: stopping")

    def run(self, poll: float = 0.1) -> int:
        """Watch the children until a signal or a failure, then stop them all; return the exit status."""
        reported: set[int] = set()
        while self._signals == 0:
            for child in self.children:
                code = child.process.poll()
                if code is None or child.pid in reported:
                    continue
                reported.add(child.pid)
                _say(f"{child.label} exited with status {code}")
                if code != 0:
                    self.failed.append(child.label)
            if self.failed:
                _say(f"{', '.join(self.failed)} failed: stopping the others")
                break
            if not self.alive():
                break
            time.sleep(poll)
        return self.stop()

    def stop(self) -> int:
        """SIGINT every live child; escalate to SIGTERM and SIGKILL after ``stop_timeout`` (or a signal)."""
        clean = True
        for step, sig in enumerate((signal.SIGINT, signal.SIGTERM, signal.SIGKILL)):
            alive = self.alive()
            if not alive:
                break
            if step:
                clean = False
                _say(f"{', '.join(c.label for c in alive)} still running: sending {sig.name}")
            for child in alive:
                try:
                    os.kill(child.pid, sig)
                except ProcessLookupError:
                    pass
            signals_before = self._signals
            deadline = time.monotonic() + (self.stop_timeout if sig != signal.SIGKILL else 5.0)
            while self.alive() and time.monotonic() < deadline and self._signals == signals_before:
                time.sleep(0.05)
        for child in self.children:
            try:
                code = child.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
            if code not in (0, -signal.SIGINT) and child.label not in self.failed:
                self.failed.append(child.label)
                _say(f"{child.label} ended with status {code}")
        return 0 if clean and not self.failed else 1


def node_command(spec, params_file: Path, python: str = sys.executable) -> list[str]:
    """The command that runs one ``NodeSpec`` with ROS arguments, as ``ros2 launch`` would."""
    argv = [python, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}",
            "-r", f"__ns:={spec.namespace}"]
    if spec.parameters:
        argv += ["--params-file", str(params_file)]
    for source, target in spec.remappings:
        argv += ["-r", f"{source}:={target}"]
    return argv


def write_params_file(spec, folder: Path) -> Path:
    """A ROS 2 params file holding ``spec``'s parameters for whichever node reads it."""
    import yaml

    path = folder / f"{spec.fully_qualified_name.strip('/').replace('/', '.') or spec.name}.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(spec.parameters)}}, sort_keys=True))
    return path


def launch(pipeline, stop_timeout: float = 5.0, dry_run: bool = False) -> int:
    """Start every node of a ``Pipeline``, wait, stop them all; return the exit status."""
    with tempfile.TemporaryDirectory(prefix="parahydra-launch-") as tmp:
        commands = []
        for spec in pipeline.nodes:
            params = write_params_file(spec, Path(tmp))
            commands.append((f"{spec.executable} {spec.fully_qualified_name}", node_command(spec, params)))
        if dry_run:
            for spec, (label, argv) in zip(pipeline.nodes, commands):
                params = "".join(f"#   {k}: {v!r}\n" for k, v in sorted(spec.parameters.items()))
                print(f"# {label}, parameters (params file removed after this dry run):\n{params}{' '.join(argv)}")
            return 0
        group = ProcessGroup(stop_timeout)
        previous = {sig: signal.signal(sig, group.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            _say(f"{pipeline.source}: {len(commands)} nodes")
            for label, argv in commands:
                group.start(label, argv)
            return group.run()
        finally:
            group.stop()  # a no-op when every child has ended
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def cmd_launch(args: argparse.Namespace) -> None:
    from ..errors import UserError
    from .config import PipelineConfigError, load_pipeline

    try:
        pipeline = load_pipeline(args.config, model=args.model, quality=args.quality, device=args.device,
                                 replay=args.replay)
    except PipelineConfigError as error:
        raise UserError(str(error)) from None
    status = launch(pipeline, stop_timeout=args.stop_timeout, dry_run=args.dry_run)
    if status:
        raise SystemExit(status)


def register(subparsers) -> None:
    """Add ``parahydra launch`` to the CLI (ROS is imported by the nodes, not here)."""
    parser = subparsers.add_parser(
        "launch", help="start a pipeline YAML's nodes as processes (ros2 launch without ROS launch)",
        description="Start the nodes of a pipeline YAML (see config/) as one process each, as "
                    "'ros2 launch parahydra_ros pipeline.launch.py config:=CONFIG' would; Ctrl-C "
                    "or SIGTERM stops them all.")
    parser.add_argument("config", help="pipeline YAML, or a name in the package's config/ (e.g. stereo)")
    parser.add_argument("--model", default=None, help="checkpoint for every node (overrides the file)")
    parser.add_argument("--quality", type=int, default=None, help="quality of every camera (overrides the file)")
    parser.add_argument("--device", default=None, help="device of every node: cpu, cuda, auto")
    replay = parser.add_mutually_exclusive_group()
    replay.add_argument("--replay", dest="replay", action="store_true", default=None,
                        help="start the file's camera replay node even if it is disabled there")
    replay.add_argument("--no-replay", dest="replay", action="store_false",
                        help="do not start the camera replay node (real cameras)")
    parser.add_argument("--stop-timeout", type=float, default=5.0,
                        help="seconds from SIGINT to SIGTERM, and from SIGTERM to SIGKILL (default 5)")
    parser.add_argument("--dry-run", action="store_true", help="print the node commands and exit")
    parser.set_defaults(func=cmd_launch)

"""``main()`` of every node: init, build, spin, and a clean exit on Ctrl-C, SIGTERM or a bad set-up."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from ..codec.errors import CheckpointError


class NodeSetupError(ValueError):
    """A parameter value a node cannot start with; the message names the parameter."""


def run_node(factory: Callable[[], Node], logger_name: str, args: Sequence[str] | None = None) -> int:
    """Run one node until shutdown; return the process exit status (0, or 1 for a failed start).

    The node's own threads (its worker) are stopped by its ``destroy_node``. A
    parameter or checkpoint error is logged as one FATAL line, without a traceback.
    """
    rclpy.init(args=args)
    node = None
    executor = SingleThreadedExecutor()
    try:
        node = factory()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (NodeSetupError, CheckpointError) as error:
        rclpy.logging.get_logger(logger_name).fatal(f"cannot start: {error}")
        return 1
    finally:
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def threads_per_worker(threads: int, workers: int) -> int:
    """Intra-op threads of each of ``workers`` threads (``threads`` 0: the cores shared out)."""
    import torch

    if workers < 1:
        raise NodeSetupError(f"workers must be at least 1, got {workers}")
    return threads or max(1, torch.get_num_threads() // workers)


def use_threads(threads: int) -> None:
    """Set the calling thread's torch CPU threads (PyTorch keeps the count per thread)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_codec(model: str, device: str, threads: int = 0):
    """The codec core with ``model`` (empty: the packaged default) on ``device``.

    ``threads`` > 0 sets torch's CPU threads for this process (0 leaves torch's default).
    """
    import torch

    from ..codec.api import ParaHydraCodec

    if threads < 0:
        raise NodeSetupError(f"threads must not be negative, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    try:
        return ParaHydraCodec.load(model or None, device=device)
    except RuntimeError as error:  # e.g. cuda requested but absent
        raise NodeSetupError(f"device {device!r}: {error}") from None


class WorkerNodeMixin:
    """Stops the node's ``worker`` (a DropOldestWorker) when the node is destroyed."""

    def destroy_node(self) -> None:
        worker = getattr(self, "worker", None)  # absent when the constructor failed
        if worker is not None:
            worker.stop()
        super().destroy_node()

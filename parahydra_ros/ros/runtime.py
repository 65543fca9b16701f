"""What every node shares: ``main()`` (init, build, spin, a clean exit on Ctrl-C, SIGTERM or a bad
set-up), its parameters declared from its table, the codec loaded, its worker threads."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from ..codec.errors import CheckpointError
from ..pipeline.parameters import ParamSpec


class NodeSetupError(ValueError):
    """A parameter value a node cannot start with; the message names the parameter."""


def run_node(factory: Callable[[], Node], logger_name: str, args: Sequence[str] | None = None) -> NoReturn:
    """Run one node as this process's whole life: init, spin until Ctrl-C or SIGTERM, clean up, exit.

    The exit status is 0 after a signal, 1 after a failed start (a parameter or checkpoint
    error, logged as one FATAL line without a traceback) or an unexpected error. Clean-up is
    bounded (the worker gets :data:`WORKER_STOP_S` to finish its item); a second SIGINT or
    SIGTERM during it ends the process at once. The process then ends with ``os._exit``:
    Python's own teardown of torch and thousands of modules took 1–10 s, and tearing it down
    under a worker thread still inside a torch op aborted the process (SIGABRT).
    """
    status = 0
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
        status = 1
    except Exception:  # noqa: BLE001 - a bug: its traceback, then the same bounded exit
        traceback.print_exc()
        status = 1
    finally:
        try:
            _exit_on_next_signal(status)
            executor.shutdown(timeout_sec=1.0)
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        except KeyboardInterrupt:  # a second Ctrl-C that came before the handler was in place
            pass
    end_process(status)


def _exit_on_next_signal(status: int) -> None:
    """From now on SIGINT or SIGTERM (Ctrl-C again, a launcher escalating) end the process at once."""
    def handler(signum: int, frame: object) -> None:
        end_process(status)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def end_process(status: int) -> NoReturn:
    """Flush what was written and leave without Python's interpreter teardown."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


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


def load_codec(model: str, device: str, threads: int = 0, max_pixels: int | None = None):
    """The codec core with ``model`` (empty: the packaged default) on ``device``.

    ``threads`` > 0 sets torch's CPU threads for this process (0 leaves torch's default).
    ``max_pixels`` is handed to the codec when its API bounds decoding (``ParaHydraCodec.load``'s
    ``max_pixels``); the decoder node checks it on every parsed header in any case.
    """
    import inspect

    import torch

    from ..codec.api import ParaHydraCodec

    if threads < 0:
        raise NodeSetupError(f"threads must not be negative, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    bound = {}
    if max_pixels is not None and "max_pixels" in inspect.signature(ParaHydraCodec.load).parameters:
        bound["max_pixels"] = max_pixels
    try:
        return ParaHydraCodec.load(model or None, device=device, **bound)
    except RuntimeError as error:  # e.g. cuda requested but absent
        raise NodeSetupError(f"device {device!r}: {error}") from None


#: Seconds a stopping node waits for its worker's current item (a VGA group decodes in ~1 s).
WORKER_STOP_S = 1.0


class WorkerNodeMixin:
    """Stops the node's ``worker`` (a DropOldestWorker) when the node is destroyed."""

    def destroy_node(self) -> None:
        """Stop the worker; destroy the node's ROS entities only once it has stopped: a worker
        still inside an item publishes when it ends, and a publisher destroyed under it crashed
        the process (SIGSEGV). :func:`run_node` ends the process right after this either way."""
        worker = getattr(self, "worker", None)  # absent when the constructor failed
        if worker is not None and not worker.stop(timeout=WORKER_STOP_S):
            return
        super().destroy_node()


def declare_parameters(node: Any, table: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on an rclpy node; return their values.

    Parameters not marked ``runtime`` are read-only once declared (they can still be
    set at start-up, by ``--ros-args -p`` or a params file). A runtime string array is
    declared with dynamic typing, because ``ros2 param set NODE NAME "[]"`` sends an
    empty *byte* array (the CLI cannot type an empty list); the node's callback reads it
    with :func:`string_array` (an empty array of any type is ``[]``). An empty array default
    is declared by type (a ``[]`` value would make rclpy infer a byte array) and
    reads back as ``[]`` when nothing overrides it.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.parameter import Parameter

    values: dict[str, Any] = {}
    for spec in table.values():
        descriptor = ParameterDescriptor(
            description=spec.description, read_only=not spec.runtime,
            type=getattr(Parameter.Type, spec.type.upper()).value,
            dynamic_typing=spec.runtime and spec.type == "string_array")
        if descriptor.dynamic_typing:  # typed by its value; unset reads back as None
            node.declare_parameter(spec.name, list(spec.default) or None, descriptor)
        elif spec.type == "string_array" and not spec.default:
            node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, descriptor)
        else:
            node.declare_parameter(spec.name, spec.default, descriptor)
        try:
            value = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            value = list(spec.default)
        if spec.type == "string_array":
            value = list(spec.default) if value is None else [] if len(value) == 0 else value
        values[spec.name] = spec.check(value, node.get_fully_qualified_name())
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps no public list of them
    unknown = sorted(name for name in overrides if not node.has_parameter(name))
    if unknown:
        node.get_logger().warning(f"ignoring parameter(s) this node does not have: {', '.join(unknown)} "
                                  f"(known: {', '.join(table)})")
    return values


def string_array(param: Any) -> list[str]:
    """The value of a set string-array parameter: a list of strings, or ``[]`` for an empty array of
    any type (``ros2 param set … "[]"`` sends a byte array); ``ValueError`` otherwise."""
    value = param.value
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
        if len(value) == 0:
            return []
        if all(isinstance(v, str) for v in value):
            return list(value)
    raise ValueError(f"{param.name} must be a list of strings (clear it with "
                     f"`ros2 param set NODE {param.name} \"[]\"`), got {value!r}")


def set_integer_range(node: Any, name: str, low: int, high: int) -> None:
    """Add ``low..high`` (step 1) to an integer parameter's descriptor: ``ros2 param describe``
    shows it and rclpy refuses values outside it."""
    from rcl_interfaces.msg import IntegerRange

    descriptor = node.describe_parameter(name)
    descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
    node.set_descriptor(name, descriptor)


def format_values(values: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """``name=value`` pairs for one start-up log line."""
    return ", ".join(f"{k}={values[k]!r}" for k in (names or values))

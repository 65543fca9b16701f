"""Write the output bag under a temporary name and move it into place only when complete.

``atomic_output(OUT)`` hands out ``OUT.partial-<pid>/<name of OUT>``: the bag is
written there and, once its writer has closed, renamed to ``OUT`` (``os.replace``,
atomic on one filesystem). On any exception, ``KeyboardInterrupt`` included, the
``OUT.partial-<pid>`` directory is removed and ``OUT`` is left as it was: a
half-written output never appears under the final name. An existing ``OUT`` is
refused unless ``force``; it is replaced only after the new bag is complete.
A run killed with SIGKILL cannot clean up: the next run for the same ``OUT`` removes
every ``OUT.partial-<pid>`` whose process no longer exists, and says so in one line
(``notice``); a folder of a process still running is left alone.
The input is never written to, and an output that is, holds or lies inside the
input is refused.

``OutputBag`` is a ``rosbags`` writer that copies connections as they are
(type, definition, type hash, serialization format, offered QoS) or adds typed ones.
An MCAP output is written with chunk compression (rosbag2's storage compression mode:
MCAP-native zstd chunks, which ``ros2 bag``, Foxglove and ``rosbags`` read without
any setting), so the topics that are copied shrink too; SQLite3 has no such mode and
is written plain.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from .errors import OutputError, TopicError

try:
    from compression import zstd  # Python 3.14
except ImportError:  # the backport rosbags depends on
    from backports import zstd

_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def check_output(source: Path, output: Path, force: bool) -> None:
    """Refuse an output that exists (without ``force``) or overlaps the input."""
    src, out = source.resolve(), output.resolve()
    if out == src or src.is_relative_to(out) or out.is_relative_to(src):
        raise OutputError(f"{output}: the output must not be, contain or lie inside the input {source}")
    if (output.exists() or output.is_symlink()) and not force:
        raise OutputError(f"{output} exists (use --force to replace it)")


def stderr_notice(line: str) -> None:
    print(line, file=sys.stderr)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(output: Path, notice: Callable[[str], None] = stderr_notice) -> list[Path]:
    """Remove the ``OUT.partial-<pid>`` folders of processes that no longer exist (a run killed
    with SIGKILL); one ``notice`` line names them. Returns the folders removed."""
    output = Path(output)
    pattern = re.compile(re.escape(output.name) + r"\.partial-(\d+)")
    stale = []
    if output.parent.is_dir():
        for path in sorted(output.parent.iterdir()):
            found = pattern.fullmatch(path.name)
            if found and int(found[1]) != os.getpid() and not _alive(int(found[1])) and path.is_dir() \
                    and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                stale.append(path)
    if stale:
        notice(f"removed {len(stale)} leftover staging folder{'s' if len(stale) > 1 else ''} of an earlier "
               f"interrupted run: {', '.join(str(p) for p in stale)}")
    return stale


def raise_if_stopped(stop: threading.Event | None) -> None:
    """``KeyboardInterrupt`` once ``stop`` is set (by the CLI's SIGINT/SIGTERM handler), so a
    run ends between two messages, where ``atomic_output`` removes its staging folder as for
    Ctrl-C; a signal raised anywhere else could land inside a library's own clean-up."""
    if stop is not None and stop.is_set():
        raise KeyboardInterrupt


@contextmanager
def atomic_output(source: Path, output: Path, force: bool,
                  notice: Callable[[str], None] = stderr_notice) -> Iterator[Path]:
    """Yield the path to write the bag to; move it to ``output`` when the block succeeds.
    Leftover staging folders of dead runs for ``output`` are removed first (``notice`` says so)."""
    source, output = Path(source), Path(output)
    check_output(source, output, force)
    remove_stale_staging(output, notice)
    staging = output.with_name(f"{output.name}.partial-{os.getpid()}")
    if staging.exists():
        raise OutputError(f"{staging} exists: remove the leftover of an earlier run")
    staging.mkdir(parents=True)
    try:
        target = staging / output.name
        yield target
        if not target.exists():
            raise OutputError(f"{output}: nothing was written")
        _publish(target, output, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(target: Path, output: Path, force: bool) -> None:
    if not (output.exists() or output.is_symlink()):
        os.replace(target, output)
        return
    if not force:  # appeared while we were writing
        raise OutputError(f"{output} exists (use --force to replace it)")
    old = target.with_name(f"{output.name}.old")
    os.replace(output, old)  # into the staging directory, removed with it
    try:
        os.replace(target, output)
    except BaseException:
        os.replace(old, output)
        raise


class OutputBag:
    """A rosbag2 being written (a context manager: closed on success, aborted on error)."""

    def __init__(self, path: Path, storage: str, typestore: Typestore):
        if storage not in _PLUGINS:
            raise OutputError(f"{path}: unknown storage {storage!r} (choose {', '.join(_PLUGINS)})")
        self.path = path
        self.typestore = typestore
        self.writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=_PLUGINS[storage])
        self.compressed = storage == "mcap"
        if self.compressed:
            self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._connections: dict[tuple[str, str, str], Connection] = {}
        self._zstd: dict[str, list] = {}  # topic -> [compressor, bytes out so far]

    def __enter__(self) -> OutputBag:
        self.writer.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.writer.__exit__(*exc_info)

    def copy_connection(self, connection: Connection) -> Connection:
        """A connection like ``connection``: same topic, type, definition, hash and QoS."""
        msgtype = connection.msgtype
        msgdef = connection.msgdef.data if connection.msgdef.format != MessageDefinitionFormat.NONE else ""
        digest = connection.digest
        if not (msgdef and digest):
            if msgtype not in self.typestore.types:
                raise TopicError(f"{connection.topic}: the input stores no definition of {msgtype} and it is "
                                 "not a standard type, so it cannot be copied")
            msgdef = msgdef or self.typestore.generate_msgdef(msgtype, ros_version=2)[0]
            digest = digest or self.typestore.hash_rihs01(msgtype)
        return self._add(connection.topic, msgtype, connection, msgdef=msgdef, rihs01=digest)

    def add_connection(self, topic: str, msgtype: str, like: Connection) -> Connection:
        """A connection of ``msgtype`` (defined by the typestore) with the QoS of ``like``."""
        return self._add(topic, msgtype, like, typestore=self.typestore)

    def _add(self, topic: str, msgtype: str, like: Connection, **definition) -> Connection:
        key = (topic, msgtype, repr(like.ext))
        if key not in self._connections:
            self._connections[key] = self.writer.add_connection(
                topic, msgtype, serialization_format=like.ext.serialization_format,
                offered_qos_profiles=like.ext.offered_qos_profiles, **definition)
        return self._connections[key]

    def set_custom_data(self, key: str, value: str) -> None:
        self.writer.set_custom_data(key, value)

    def write(self, connection: Connection, log_time: int, data: bytes) -> None:
        self.writer.write(connection, log_time, data)
        if self.compressed:
            if connection.topic not in self._zstd:
                self._zstd[connection.topic] = [zstd.ZstdCompressor(), 0]
            state = self._zstd[connection.topic]
            state[1] += len(state[0].compress(data))

    def compressed_sizes(self) -> dict[str, int]:
        """Per output topic, its messages compressed alone with the chunks' zstd: what the topic
        costs in the compressed MCAP (≈; chunks mix topics, so this is an estimate). Empty when
        the output is not compressed. Call once, after the last ``write``."""
        return {topic: size + len(compressor.flush()) for topic, (compressor, size) in self._zstd.items()}

"""FileSend: exporters send their output to the client (``/moby.filesync.v1.FileSend/DiffCopy``).

The daemon opens one call per exporter that writes to the client; metadata
``buildkit-attachable-exporter-id`` is the exporter's index in
``SolveRequest.exporters``. What flows depends on the exporter (spec §3.2), and so
does the :data:`Target` registered for that index:

* ``local`` -> :class:`DirectoryTarget`: fsutil packets, received by
  :func:`~llblib_async._fsutil.receive.receive_tree` (the roles of FileSync reversed);
* ``tar``/``oci``/``docker`` -> :class:`FileTarget` or :class:`StreamTarget`: raw
  ``BytesMessage`` chunks of the archive until the daemon half-closes; we return only
  once the data is flushed (the daemon waits for that before reporting success).

So the handler is registered with :class:`~llblib_async._wire.messages.RawMessage` and
decodes per target. The daemon names the exporter only by its index, not by build, so
one session can receive the exports of one request at a time
(:class:`llblib_async.Session` serialises them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import grpclib.const
import grpclib.server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._fsutil import wire
from .._fsutil.receive import ReceiveStats, receive_tree
from .._wire.messages import BytesMessage, RawMessage

__all__ = [
    "DIFFCOPY_METHOD",
    "ByteSink",
    "DirectoryTarget",
    "FileSendProvider",
    "FileTarget",
    "StreamTarget",
    "Target",
    "receive_file",
]

DIFFCOPY_METHOD = "/moby.filesync.v1.FileSend/DiffCopy"
_KEY_EXPORTER_ID = "buildkit-attachable-exporter-id"
_KEY_EXPORTER_MD_PREFIX = "exporter-md-"


class ByteSink(Protocol):
    """Where a tarball goes: ``anyio.abc.ByteSendStream``-compatible.

    ``aclose`` must return only once the data is flushed.
    """

    async def send(self, item: bytes) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DirectoryTarget:
    """Receive a ``local`` exporter's tree into ``path`` (created if missing; merged)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


@dataclass(frozen=True, slots=True)
class FileTarget:
    """Write a ``tar``/``oci``/``docker`` exporter's archive to ``path`` (replaced).

    ``fsync`` makes the handler wait until the data is on disk, not just written.
    """

    path: Path
    fsync: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Stream an archive into a sink returned by ``open(exporter_metadata)``.

    ``open`` gets the ``exporter-md-*`` metadata (e.g. ``containerimage.digest``);
    returning ``None`` tells the daemon the target already exists (it skips it).
    """

    open: Callable[[Mapping[str, str]], Awaitable[ByteSink | None]]


Target = DirectoryTarget | FileTarget | StreamTarget


# --------------------------------------------------------------------------- validation


class _FileSink:
    """A :class:`ByteSink` writing to a local file from worker threads."""

    def __init__(self, path: Path, fsync: bool) -> None:
        self._path = path
        self._fsync = fsync
        self._f: Any = None

    async def open(self) -> None:
        def _open() -> Any:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            return open(self._path, "wb")  # closed in aclose()

        self._f = await anyio.to_thread.run_sync(_open)

    async def send(self, item: bytes) -> None:
        await anyio.to_thread.run_sync(self._f.write, item)

    async def aclose(self) -> None:
        f, self._f = self._f, None
        if f is None:
            return

        def _close() -> None:
            try:
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            finally:
                f.close()

        await anyio.to_thread.run_sync(_close)


async def receive_file(stream: Any, sink: ByteSink) -> int:
    """Copy a FileSend byte stream into ``sink`` until the daemon half-closes."""
    n = 0
    try:
        while True:
            msg = await stream.recv_message()
            if msg is None:
                break
            data = BytesMessage.FromString(msg.data).data  # (hand codec: betterproto2's is slow)
            if data:
                await sink.send(data)
                n += len(data)
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await sink.aclose()
        raise
    await sink.aclose()
    return n


class FileSendProvider:
    """Attachable receiving exporter output; ``targets`` maps exporter index -> target."""

    def __init__(self, targets: Mapping[int, Target]) -> None:
        for i, t in targets.items():
            if not isinstance(t, DirectoryTarget | FileTarget | StreamTarget):
                raise TypeError(
                    f"exporter {i}: expected DirectoryTarget, FileTarget or StreamTarget, got {t!r}"
                )
        self.targets = dict(targets)
        #: per exporter index: the local error that failed its transfer
        self.errors: dict[int, BaseException] = {}
        #: per exporter index: ReceiveStats (directories) or byte count (files)
        self.results: dict[int, ReceiveStats | int] = {}

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            DIFFCOPY_METHOD: grpclib.const.Handler(
                self._diffcopy, grpclib.const.Cardinality.STREAM_STREAM, RawMessage, RawMessage
            )
        }

    async def _diffcopy(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        md = stream.metadata
        try:
            exporter_id = int(md.get(_KEY_EXPORTER_ID, "0")) if md is not None else 0
        except ValueError:
            exporter_id = 0  # Go's chooser falls back to 0 as well
        target = self.targets.get(exporter_id)
        if target is None:
            raise GRPCError(Status.NOT_FOUND, f"exporter {exporter_id} not found")
        try:
            if isinstance(target, DirectoryTarget):
                stats = self.results[exporter_id] = ReceiveStats()
                await receive_tree(wire.GrpcPacketConn(stream), target.path, stats)
                return
            if isinstance(target, FileTarget):
                sink: ByteSink | None = _FileSink(target.path, target.fsync)
                assert isinstance(sink, _FileSink)
                await sink.open()
            else:
                exporter_md: dict[str, list[str]] = {}
                for k, v in md.items() if md is not None else ():
                    if k.startswith(_KEY_EXPORTER_MD_PREFIX):
                        exporter_md.setdefault(k.removeprefix(_KEY_EXPORTER_MD_PREFIX), []).append(str(v))
                sink = await target.open({k: ",".join(v) for k, v in exporter_md.items()})
                if sink is None:
                    raise GRPCError(Status.ALREADY_EXISTS, "target already exists")
            self.results[exporter_id] = await receive_file(stream, sink)
        except wire.TransferError as e:
            self.errors[exporter_id] = e
            raise GRPCError(e.status, e.message) from e
        except GRPCError:
            raise
        except Exception as e:
            # Local write failures (disk full, a sink's own error): keep the exception
            # for the client and give the daemon a readable status instead of
            # grpclib's "Internal Server Error".
            self.errors[exporter_id] = e
            raise GRPCError(Status.UNKNOWN, f"exporter {exporter_id}: {e}") from e

"""FileSync: the daemon reads local directories (``/moby.filesync.v1.FileSync/DiffCopy``).

The daemon asks for a local directory by name (``local://<name>`` sources, frontend
contexts) and receives it with fsutil's diffcopy protocol; :class:`FileSyncProvider`
answers with the directory registered under that name, sent by
:func:`~llblib_async._fsutil.send.send_tree` (walk, filters, file contents on demand).
A name that was not registered gets ``NOT_FOUND``: the daemon never reads anything
the client did not offer, and :func:`checked_dir` refuses to offer what is not a
directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpclib.const
import grpclib.server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._fsutil import wire
from .._fsutil.send import DEFAULT_CHUNK, SendStats, parse_request_options, send_tree
from .._fsutil.walk import FilterOptions, MapFunc
from .._wire.messages import RawMessage
from ..errors import LocalDirError

__all__ = ["DIFFCOPY_METHOD", "FileSyncProvider", "add_dir", "checked_dir"]

DIFFCOPY_METHOD = "/moby.filesync.v1.FileSync/DiffCopy"


def checked_dir(name: str, path: str | os.PathLike[str]) -> Path:
    """``path`` as an absolute :class:`~pathlib.Path` if it is a directory, else
    :class:`~llblib_async.errors.LocalDirError` naming ``name`` and the reason."""
    absolute = Path(path).absolute()
    if not absolute.is_dir():
        reason = "does not exist" if not absolute.exists() else "is not a directory"
        raise LocalDirError(name, str(absolute), reason)
    return absolute


def add_dir(dirs: dict[str, Path], name: str, path: str | os.PathLike[str]) -> Path:
    """Add ``path`` to ``dirs`` as ``name`` (a no-op if it is there already); the absolute path.

    Raises :class:`~llblib_async.errors.LocalDirError` if ``path`` is not a directory or
    ``name`` is already used for another directory.
    """
    absolute = checked_dir(name, path)
    current = dirs.setdefault(name, absolute)
    if current != absolute:
        raise LocalDirError(name, str(absolute), f"the name is already served from {current}")
    return absolute


def _go_quote(s: str) -> str:
    """Go's ``%q`` for the error messages the daemon shows (close enough for text)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FileSyncProvider:
    """Attachable serving local directories to the daemon by name.

    ``dirs`` maps the names used in ``local://<name>`` sources to directories.
    ``adjust`` may rewrite the filter options of each request (like Go's
    ``FilterOptFunc``, e.g. to add a map function); ``map_fn`` is a shortcut for a
    map function applied to every request. ``chunk_size`` is the payload of one DATA
    packet: 256 KiB by default (Go sends 32 KiB; larger packets cut the per-message
    cost of the two HTTP/2 layers, 256 KiB roughly doubles throughput; the daemon
    accepts up to 16 MiB).
    """

    def __init__(
        self,
        dirs: Mapping[str, str | os.PathLike[str]],
        *,
        map_fn: MapFunc | None = None,
        adjust: Callable[[str, FilterOptions], FilterOptions] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        if not 0 < chunk_size <= 8 * 1024 * 1024:
            raise ValueError("chunk_size must be between 1 byte and 8 MiB")
        self._chunk_size = chunk_size
        #: the directories served, by name (see :meth:`serve`)
        self.dirs: dict[str, Path] = {name: checked_dir(name, d) for name, d in dirs.items()}
        self._map_fn = map_fn
        self._adjust = adjust
        #: one entry per completed or failed transfer, in order
        self.transfers: list[SendStats] = []

    def serve(self, name: str, path: str | os.PathLike[str]) -> None:
        """Serve ``path`` as ``local://name`` from now on.

        Raises :class:`~llblib_async.errors.LocalDirError` if ``path`` is not a
        directory or ``name`` is already served from another directory.
        """
        add_dir(self.dirs, name, path)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            DIFFCOPY_METHOD: grpclib.const.Handler(
                self._diffcopy, grpclib.const.Cardinality.STREAM_STREAM, RawMessage, RawMessage
            )
        }

    async def _diffcopy(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        name, opts = parse_request_options(stream.metadata)
        root = self.dirs.get(name)
        if root is None:
            raise GRPCError(Status.NOT_FOUND, f"no access allowed to dir {_go_quote(name)}")
        if self._map_fn is not None:
            opts = replace(opts, map=self._map_fn)
        if self._adjust is not None:
            opts = self._adjust(name, opts)
        try:
            conn = wire.GrpcPacketConn(stream)
            stats = await send_tree(conn, root, opts, name=name, chunk=self._chunk_size)
        except wire.TransferError as e:
            # Only our side's failures: the receiver's own are already the daemon's error.
            self.transfers.append(SendStats(name=name, options=opts, error=e.message if e.send_err else ""))
            raise GRPCError(e.status, f"local {name}: {e.message}") from e
        self.transfers.append(stats)

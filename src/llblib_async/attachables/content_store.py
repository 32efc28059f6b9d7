"""The session content store: containerd's ``Content`` API over local OCI layout directories.

The daemon reads and writes blobs through the session (spec §3.7) when a build
imports or exports cache in a local directory (``CacheImport.local``,
``CacheExport.local``) or exports an image into an OCI layout directory
(``OCILayoutExport``). It names the directory by a store id in the metadata
``buildkit-attachable-store-id``: ``local:<dir>`` for cache directories (the
directory's path, so requests can share them) and the fixed ``export`` for an OCI
layout export (so only one such export per session can run at a time).

:class:`ContentStore` maps store ids to directories: blobs are read from / committed
to ``<dir>/blobs/sha256/``, unfinished writes live in ``<dir>/ingest/``. Digests are
checked on commit; a store id it does not know gets ``NOT_FOUND``.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import grpclib.const
import grpclib.server
from grpclib.const import Status as GrpcStatus
from grpclib.exceptions import GRPCError

from .._pb.containerd.services.content import v1 as content
from .._wire.messages import RawMessage

__all__ = ["EXPORT_STORE", "ContentStore"]

_STORE_ID_KEY = "buildkit-attachable-store-id"
_CONTENT = "/containerd.services.content.v1.Content/"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_READ_CHUNK = 1 << 20
#: The content store id the daemon uses for an OCI layout export.
EXPORT_STORE = "export"


@dataclass
class _Ingest:
    path: Path
    offset: int = 0
    total: int = 0
    started: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    updated: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))


def _blob_path(root: Path, digest: str) -> Path:
    if not _DIGEST_RE.fullmatch(digest):
        raise GRPCError(GrpcStatus.INVALID_ARGUMENT, f"unsupported digest {digest!r}")
    return root / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b" if path.exists() else "wb") as f:
        f.truncate(offset)
        f.seek(offset)
        f.write(data)


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


class ContentStore:
    """Session content store (containerd ``Content`` API) over OCI layout directories.

    ``stores`` maps store ids (``local:<dir>``, ``export``, as the daemon names them)
    to directories; it may change while the session runs (requests add theirs).
    """

    def __init__(self, stores: Mapping[str, Path]) -> None:
        self.stores = {k: Path(v) for k, v in stores.items()}
        self._ingests: dict[tuple[Path, str], _Ingest] = {}

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        c = grpclib.const.Cardinality
        return {
            _CONTENT + "Info": grpclib.const.Handler(
                self._info, c.UNARY_UNARY, content.InfoRequest, content.InfoResponse
            ),
            _CONTENT + "Update": grpclib.const.Handler(
                self._update, c.UNARY_UNARY, content.UpdateRequest, content.UpdateResponse
            ),
            _CONTENT + "Read": grpclib.const.Handler(
                self._read, c.UNARY_STREAM, content.ReadContentRequest, content.ReadContentResponse
            ),
            _CONTENT + "Status": grpclib.const.Handler(
                self._status, c.UNARY_UNARY, content.StatusRequest, content.StatusResponse
            ),
            _CONTENT + "Write": grpclib.const.Handler(
                self._write, c.STREAM_STREAM, content.WriteContentRequest, content.WriteContentResponse
            ),
            _CONTENT + "Abort": grpclib.const.Handler(
                self._abort, c.UNARY_UNARY, content.AbortRequest, RawMessage
            ),
        }

    def _root(self, stream: grpclib.server.Stream[Any, Any]) -> Path:
        md = stream.metadata
        store_id = str(md.get(_STORE_ID_KEY, "")) if md is not None else ""
        root = self.stores.get(store_id)
        if root is None:
            raise GRPCError(GrpcStatus.NOT_FOUND, f"content store {store_id!r} not found")
        return root

    async def _info_of(self, root: Path, digest: str) -> content.Info:
        path = _blob_path(root, digest)
        try:
            st = await anyio.Path(path).stat()
        except FileNotFoundError:
            raise GRPCError(GrpcStatus.NOT_FOUND, f"content {digest} not found") from None
        modified = datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC)
        return content.Info(digest=digest, size=st.st_size, created_at=modified, updated_at=modified)

    async def _info(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        info = await self._info_of(self._root(stream), request.digest)
        await stream.send_message(content.InfoResponse(info=info))

    async def _update(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        assert request.info is not None
        info = await self._info_of(self._root(stream), request.info.digest)
        await stream.send_message(content.UpdateResponse(info=info))

    async def _read(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        info = await self._info_of(self._root(stream), request.digest)
        path = _blob_path(self._root(stream), request.digest)
        offset = request.offset
        end = info.size if request.size <= 0 else min(info.size, offset + request.size)
        while offset < end:
            data = await anyio.to_thread.run_sync(_read_at, path, offset, min(_READ_CHUNK, end - offset))
            if not data:
                break
            await stream.send_message(content.ReadContentResponse(offset=offset, data=data))
            offset += len(data)

    async def _status(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        ingest = self._ingests.get((self._root(stream), request.ref))
        if ingest is None:
            raise GRPCError(GrpcStatus.NOT_FOUND, f"no write in progress for {request.ref!r}")
        status = content.Status(
            started_at=ingest.started,
            updated_at=ingest.updated,
            ref=request.ref,
            offset=ingest.offset,
            total=ingest.total,
        )
        await stream.send_message(content.StatusResponse(status=status))

    async def _abort(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        ingest = self._ingests.pop((self._root(stream), request.ref), None)
        if ingest is not None:
            await anyio.Path(ingest.path).unlink(missing_ok=True)
        await stream.send_message(RawMessage())

    async def _write(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        # Only the first message of a Write stream names the ref: the stream is the
        # transaction.  Concurrent writes of one ref each get their own ingest file.
        root = self._root(stream)
        ingest: _Ingest | None = None
        key = (root, "")
        try:
            while (request := await stream.recv_message()) is not None:
                if ingest is None:
                    key = (root, request.ref)
                    name = f"{hashlib.sha256(request.ref.encode()).hexdigest()}-{id(stream):x}"
                    await anyio.Path(root / "ingest").mkdir(parents=True, exist_ok=True)
                    ingest = self._ingests[key] = _Ingest(root / "ingest" / name)
                if request.total:
                    ingest.total = request.total
                if request.action != content.WriteAction.STAT and request.data:
                    if request.offset > ingest.offset:
                        raise GRPCError(
                            GrpcStatus.OUT_OF_RANGE, f"write at {request.offset}, have {ingest.offset}"
                        )
                    await anyio.to_thread.run_sync(_write_at, ingest.path, request.offset, request.data)
                    ingest.offset = request.offset + len(request.data)
                    ingest.updated = datetime.datetime.now(datetime.UTC)
                response = content.WriteContentResponse(
                    action=request.action,
                    started_at=ingest.started,
                    updated_at=ingest.updated,
                    offset=ingest.offset,
                    total=ingest.total,
                )
                if request.action == content.WriteAction.COMMIT:
                    response.digest = await self._commit(root, ingest, request.expected)
                await stream.send_message(response)
        finally:
            if ingest is not None:
                if self._ingests.get(key) is ingest:
                    del self._ingests[key]
                await anyio.Path(ingest.path).unlink(missing_ok=True)

    async def _commit(self, root: Path, ingest: _Ingest, expected: str) -> str:
        if ingest.total and ingest.offset != ingest.total:
            raise GRPCError(
                GrpcStatus.FAILED_PRECONDITION,
                f"unexpected commit size {ingest.offset}, expected {ingest.total}",
            )
        if not await anyio.Path(ingest.path).exists():
            await anyio.to_thread.run_sync(_write_at, ingest.path, 0, b"")
        digest = await anyio.to_thread.run_sync(_file_sha256, ingest.path)
        if expected and expected != digest:
            raise GRPCError(
                GrpcStatus.FAILED_PRECONDITION, f"unexpected commit digest {digest}, expected {expected}"
            )
        blob = _blob_path(root, digest)
        await anyio.Path(blob.parent).mkdir(parents=True, exist_ok=True)
        await anyio.Path(ingest.path).rename(blob)
        return digest

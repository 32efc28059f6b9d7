"""Where a build's result goes, and where its cache comes from / goes to.

Each exporter is an immutable value naming a BuildKit exporter (``type``, ``attrs``)
and, for those that send their output back to the client, the local destination
(``session_target()``):

* filesystems: :class:`LocalExport` (directory), :class:`TarExport` (tar file);
* images: :class:`ImageExport` (daemon store / registry push; credentials from
  :class:`~llblib_async.auth.DockerAuthProvider`), :class:`DockerExport` and
  :class:`OCIExport` (tarballs to a file or a stream), :class:`MobyExport` (the
  Docker daemon's image store).  They carry the image config as the exporter
  attr ``containerimage.config``; ``solve`` takes it from the State if unset.

Cache options (:class:`CacheExport`, :class:`CacheImport`) go into
``SolveRequest.cache``; :func:`plan_cache` turns them into request entries and, for
``local`` cache directories, the session content store :class:`LocalCacheStore`
(containerd ``Content`` API, spec section 3.7) plus the ``index.json`` update after
the build.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import anyio
import anyio.to_thread
import grpclib.const
import grpclib.server
from grpclib.const import Status as GrpcStatus
from grpclib.exceptions import GRPCError

from ._fsutil.receive import DirectoryTarget, FileTarget, StreamTarget, Target
from ._pb.containerd.services.content import v1 as content
from ._pb.moby.buildkit import v1 as control
from ._session import RawMessage
from .errors import ExportError
from .llb.image_config import EXPORTER_IMAGE_CONFIG_KEY, ImageConfig


@dataclass(frozen=True, slots=True)
class _ClientExport:
    """An exporter whose output is sent back through the session to ``dest``."""

    dest: Path
    attrs: Mapping[str, str] = field(default_factory=dict)

    type: ClassVar[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", Path(self.dest))
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    def session_target(self) -> Target | None:
        """How the session's FileSend receiver stores this exporter's output (None: not sent back)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class LocalExport(_ClientExport):
    """Write the result's filesystem into the directory ``dest`` (created if missing)."""

    type: ClassVar[str] = "local"

    def session_target(self) -> Target:
        return DirectoryTarget(self.dest)


@dataclass(frozen=True, slots=True)
class TarExport(_ClientExport):
    """Write the result's filesystem as a tar archive to the file ``dest``."""

    type: ClassVar[str] = "tar"

    def session_target(self) -> Target:
        return FileTarget(self.dest)


# --------------------------------------------------------------------------- image exporters

Compression = Literal["uncompressed", "gzip", "zstd", "estargz"]
_COMPRESSIONS = ("uncompressed", "gzip", "zstd", "estargz")


class UnsupportedExporterError(ExportError):
    """The daemon has no such exporter (e.g. ``image`` on a graphdriver Docker daemon)."""

    def __init__(self, exporter: str, reason: str) -> None:
        super().__init__(f"exporter {exporter!r} is not supported by this daemon: {reason}")
        self.exporter = exporter
        self.reason = reason


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _names(name: str | Sequence[str] | None) -> tuple[str, ...]:
    if name is None:
        return ()
    names = (name,) if isinstance(name, str) else tuple(name)
    for n in names:
        if not n or "," in n:
            raise ValueError(f"invalid image name {n!r}")
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class _ImageOptions:
    """Options shared by the ``image``, ``docker`` and ``oci`` exporters.

    ``annotations``: keys without an ``annotation`` prefix become ``annotation.<key>``
    (manifest annotations); keys such as ``annotation-index.<k>`` or
    ``annotation-manifest[linux/amd64].<k>`` are passed as they are.
    ``image_config``: the OCI image config (exporter attr ``containerimage.config``);
    when ``None``, :func:`~llblib_async.solve.solve` sends the solved State's config.
    ``extra_attrs``: further exporter attributes, passed verbatim (they win).
    """

    compression: Compression | None = None
    compression_level: int | None = None
    force_compression: bool = False
    oci_mediatypes: bool | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    image_config: ImageConfig | bytes | None = None
    source_date_epoch: int | None = None
    extra_attrs: Mapping[str, str] = field(default_factory=dict)

    #: the exporter reads ``containerimage.config`` (solve fills it from the State if unset)
    accepts_image_config: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.compression is not None and self.compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of {_COMPRESSIONS}, not {self.compression!r}")
        if self.compression_level is not None and self.compression is None:
            raise ValueError("compression_level needs compression")
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))
        object.__setattr__(self, "extra_attrs", MappingProxyType(dict(self.extra_attrs)))

    def _image_attrs(self) -> dict[str, str]:
        attrs: dict[str, str] = {}
        if self.compression is not None:
            attrs["compression"] = self.compression
        if self.compression_level is not None:
            attrs["compression-level"] = str(self.compression_level)
        if self.force_compression:
            attrs["force-compression"] = "true"
        if self.oci_mediatypes is not None:
            attrs["oci-mediatypes"] = _bool(self.oci_mediatypes)
        if self.source_date_epoch is not None:
            attrs["source-date-epoch"] = str(self.source_date_epoch)
        for key, value in self.annotations.items():
            attrs[key if key.startswith("annotation") else f"annotation.{key}"] = value
        if self.image_config is not None:
            config = self.image_config
            attrs[EXPORTER_IMAGE_CONFIG_KEY] = (
                config.to_json() if isinstance(config, ImageConfig) else config
            ).decode()
        return attrs


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageExport(_ImageOptions):
    """BuildKit's ``image`` exporter: store the image in the daemon, optionally push it.

    ``name``: one or more references (``registry/repo:tag``); :attr:`names` is the
    tuple.  ``push`` pushes them (credentials from a
    :class:`~llblib_async.auth.DockerAuthProvider` attachable); ``insecure`` allows
    plain-HTTP / self-signed registries; ``push_by_digest`` pushes without a tag.
    Nothing comes back to the client; the response has ``containerimage.digest``,
    ``containerimage.config.digest``, ``image.name``.
    """

    name: str | Sequence[str] = field(kw_only=False)
    push: bool = False
    push_by_digest: bool = False
    insecure: bool = False
    unpack: bool = False
    store: bool | None = None

    type: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        _ImageOptions.__post_init__(self)
        names = _names(self.name)
        if not names:
            raise ValueError("ImageExport needs at least one image name")
        object.__setattr__(self, "name", names)

    @property
    def names(self) -> tuple[str, ...]:
        return _names(self.name)

    @property
    def attrs(self) -> Mapping[str, str]:
        attrs = {"name": ",".join(self.names)}
        if self.push:
            attrs["push"] = "true"
        if self.push_by_digest:
            attrs["push-by-digest"] = "true"
        if self.insecure:
            attrs["registry.insecure"] = "true"
        if self.unpack:
            attrs["unpack"] = "true"
        if self.store is not None:
            attrs["store"] = _bool(self.store)
        attrs.update(self._image_attrs())
        attrs.update(self.extra_attrs)
        return MappingProxyType(attrs)

    def session_target(self) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class _TarballExport(_ImageOptions):
    """An image tarball streamed back to ``dest``: a file path or a :class:`StreamTarget`."""

    dest: Path | str | StreamTarget = field(kw_only=False)
    name: str | Sequence[str] | None = None

    type: ClassVar[str]

    def __post_init__(self) -> None:
        _ImageOptions.__post_init__(self)
        names = _names(self.name)
        object.__setattr__(self, "name", names or None)
        if not isinstance(self.dest, StreamTarget):
            object.__setattr__(self, "dest", Path(self.dest))

    @property
    def names(self) -> tuple[str, ...]:
        return _names(self.name)

    @property
    def attrs(self) -> Mapping[str, str]:
        attrs: dict[str, str] = {}
        if self.names:
            attrs["name"] = ",".join(self.names)
        attrs.update(self._image_attrs())
        attrs.update(self.extra_attrs)
        return MappingProxyType(attrs)

    def session_target(self) -> Target:
        if isinstance(self.dest, StreamTarget):
            return self.dest
        return FileTarget(Path(self.dest))


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerExport(_TarballExport):
    """BuildKit's ``docker`` exporter: a ``docker load``-able tarball (``manifest.json``,
    ``RepoTags`` from ``name``) written to the file ``dest`` or streamed to a
    :class:`~llblib_async._fsutil.receive.StreamTarget`."""

    type: ClassVar[str] = "docker"


@dataclass(frozen=True, slots=True, kw_only=True)
class OCIExport(_TarballExport):
    """BuildKit's ``oci`` exporter: an OCI image layout tarball (``oci-layout``,
    ``index.json``, ``blobs/``) written to ``dest`` (file or stream)."""

    type: ClassVar[str] = "oci"


@dataclass(frozen=True, slots=True)
class MobyExport:
    """The Docker daemon's ``moby`` exporter: load the result into Docker's image store.

    Only for ``docker://`` connections.  ``image_config`` as for :class:`ImageExport`
    (``None``: the solved State's config). Docker 20.10's exporter ignores the exporter
    attr and reads the config only from the build result's metadata, so requests with
    one run as gateway builds that put it there (``client.solve`` does this by itself
    on a Docker daemon); newer engines wrap BuildKit's ``image`` exporter, which reads both.
    """

    name: str | Sequence[str]
    image_config: ImageConfig | bytes | None = None
    extra_attrs: Mapping[str, str] = field(default_factory=dict)

    type: ClassVar[str] = "moby"
    accepts_image_config: ClassVar[bool] = True

    def __post_init__(self) -> None:
        names = _names(self.name)
        if not names:
            raise ValueError("MobyExport needs at least one image name")
        object.__setattr__(self, "name", names)
        object.__setattr__(self, "extra_attrs", MappingProxyType(dict(self.extra_attrs)))

    @property
    def names(self) -> tuple[str, ...]:
        return _names(self.name)

    @property
    def attrs(self) -> Mapping[str, str]:
        attrs = {"name": ",".join(self.names)}
        if self.image_config is not None:
            config = self.image_config
            attrs[EXPORTER_IMAGE_CONFIG_KEY] = (
                config.to_json() if isinstance(config, ImageConfig) else config
            ).decode()
        attrs.update(self.extra_attrs)
        return MappingProxyType(attrs)

    def session_target(self) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class OCILayoutExport(_ImageOptions):
    """BuildKit's ``oci`` exporter with ``tar=false``: the image is written into the OCI
    layout *directory* ``dest`` (blobs through the session content store ``export``)
    and ``index.json`` gets its manifest, named by ``name`` (default tag ``latest``).
    One per solve.
    """

    dest: Path | str = field(kw_only=False)
    name: str | Sequence[str] | None = None

    type: ClassVar[str] = "oci"

    def __post_init__(self) -> None:
        _ImageOptions.__post_init__(self)
        object.__setattr__(self, "name", _names(self.name) or None)
        object.__setattr__(self, "dest", Path(self.dest))

    @property
    def names(self) -> tuple[str, ...]:
        return _names(self.name)

    @property
    def attrs(self) -> Mapping[str, str]:
        attrs = {"tar": "false"}
        if self.names:
            attrs["name"] = ",".join(self.names)
        attrs.update(self._image_attrs())
        attrs.update(self.extra_attrs)
        return MappingProxyType(attrs)

    def session_target(self) -> None:
        return None


Export = LocalExport | TarExport | ImageExport | DockerExport | OCIExport | OCILayoutExport | MobyExport

#: Exporters a graphdriver-mode Docker daemon (the classic default) offers (spec §8.2).
MOBY_GRAPHDRIVER_EXPORTERS = frozenset({"moby", "local", "tar"})


# --------------------------------------------------------------------------- cache


def _cache_attrs(
    *,
    mode: Literal["min", "max"] | None = None,
    image_manifest: bool | None = None,
    oci_mediatypes: bool | None = None,
    compression: Compression | None = None,
    ignore_error: bool = False,
    insecure: bool = False,
) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if mode is not None:
        if mode not in ("min", "max"):
            raise ValueError(f"cache mode must be 'min' or 'max', not {mode!r}")
        attrs["mode"] = mode
    if image_manifest is not None:
        attrs["image-manifest"] = _bool(image_manifest)
    if oci_mediatypes is not None:
        attrs["oci-mediatypes"] = _bool(oci_mediatypes)
    if compression is not None:
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of {_COMPRESSIONS}, not {compression!r}")
        attrs["compression"] = compression
    if ignore_error:
        attrs["ignore-error"] = "true"
    if insecure:
        attrs["registry.insecure"] = "true"
    return attrs


@dataclass(frozen=True, slots=True)
class CacheExport:
    """Where a build exports its cache (``SolveRequest.cache.exports``).

    Build with :meth:`registry`, :meth:`local` or :meth:`inline` (or any
    ``type``/``attrs`` the daemon knows: ``gha``, ``s3``...).
    """

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @classmethod
    def registry(
        cls,
        ref: str,
        *,
        mode: Literal["min", "max"] = "min",
        image_manifest: bool | None = None,
        oci_mediatypes: bool | None = None,
        compression: Compression | None = None,
        ignore_error: bool = False,
        insecure: bool = False,
    ) -> CacheExport:
        """Push the cache as a separate image ``ref``; ``mode="max"`` also exports
        intermediate steps' layers.  Push credentials come from the session's Auth."""
        attrs = {"ref": ref}
        attrs.update(
            _cache_attrs(
                mode=mode,
                image_manifest=image_manifest,
                oci_mediatypes=oci_mediatypes,
                compression=compression,
                ignore_error=ignore_error,
                insecure=insecure,
            )
        )
        return cls("registry", attrs)

    @classmethod
    def local(
        cls,
        dest: Path | str,
        *,
        mode: Literal["min", "max"] = "min",
        tag: str = "latest",
        oci_mediatypes: bool | None = None,
        compression: Compression | None = None,
        ignore_error: bool = False,
    ) -> CacheExport:
        """Write the cache into the OCI layout directory ``dest`` on the client (through
        the session content store); ``index.json`` names it ``tag``."""
        attrs = {"dest": str(Path(dest).absolute())}
        if tag != "latest":
            attrs["tag"] = tag
        attrs.update(
            _cache_attrs(
                mode=mode, oci_mediatypes=oci_mediatypes, compression=compression, ignore_error=ignore_error
            )
        )
        return cls("local", attrs)

    @classmethod
    def inline(cls) -> CacheExport:
        """Embed cache metadata in the exported image's config (import it with
        :meth:`CacheImport.registry` on the image's reference)."""
        return cls("inline")

    def to_pb(self) -> control.CacheOptionsEntry:
        return control.CacheOptionsEntry(type=self.type, attrs=dict(self.attrs))


@dataclass(frozen=True, slots=True)
class CacheImport:
    """A cache source for a build (``SolveRequest.cache.imports``): :meth:`registry`, :meth:`local`."""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @classmethod
    def registry(cls, ref: str, *, insecure: bool = False) -> CacheImport:
        """Import cache from the cache image (or inline-cache image) ``ref``."""
        attrs = {"ref": ref}
        if insecure:
            attrs["registry.insecure"] = "true"
        return cls("registry", attrs)

    @classmethod
    def local(cls, src: Path | str, *, tag: str = "latest", digest: str | None = None) -> CacheImport:
        """Import cache from the OCI layout directory ``src`` written by
        :meth:`CacheExport.local` (the manifest named ``tag`` in its ``index.json``,
        unless ``digest`` is given)."""
        attrs = {"src": str(Path(src).absolute())}
        if tag != "latest":
            attrs["tag"] = tag
        if digest is not None:
            attrs["digest"] = digest
        return cls("local", attrs)

    def to_pb(self) -> control.CacheOptionsEntry:
        return control.CacheOptionsEntry(type=self.type, attrs=dict(self.attrs))


# --------------------------------------------------------------------------- local cache store

_STORE_ID_KEY = "buildkit-attachable-store-id"
_CONTENT = "/containerd.services.content.v1.Content/"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_READ_CHUNK = 1 << 20
_REF_NAME = "org.opencontainers.image.ref.name"
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_IMAGE_NAME = "io.containerd.image.name"
#: The content store id the daemon uses for an OCI layout export.
EXPORT_STORE = "export"


def _tag_of(name: str) -> str:
    last = name.rpartition("/")[2].partition("@")[0]
    return last.rpartition(":")[2] if ":" in last else "latest"


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


class LocalCacheStore:
    """Session content store (containerd ``Content`` API) for ``local`` cache dirs (spec §3.7).

    ``stores`` maps store ids (``local:<dir>``, as the daemon names them) to OCI layout
    directories: blobs are read from / committed to ``<dir>/blobs/sha256/``, unfinished
    writes live in ``<dir>/ingest/``.
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


def _read_index(root: Path) -> dict[str, Any]:
    try:
        loaded = json.loads((root / "index.json").read_text())
    except FileNotFoundError:
        return {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": []}
    if not isinstance(loaded, dict):
        raise ExportError(f"{root / 'index.json'}: not a JSON object")
    return loaded


def _put_index(root: Path, descriptor: Mapping[str, Any], tag: str, name: str | None = None) -> None:
    """Go's ``ociindex.Put``: replace the entry named ``tag`` (and image ``name``)."""
    index = _read_index(root)
    manifests = [
        m
        for m in index.get("manifests") or []
        if (m.get("annotations") or {}).get(_REF_NAME) != tag
        and (name is None or (m.get("annotations") or {}).get(_IMAGE_NAME) != name)
    ]
    entry = dict(descriptor)
    entry["annotations"] = {**(entry.get("annotations") or {}), _REF_NAME: tag}
    if name is not None:
        entry["annotations"][_IMAGE_NAME] = name
    manifests.append(entry)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index["manifests"] = manifests
    index.setdefault("schemaVersion", 2)
    index.setdefault("mediaType", _OCI_INDEX)
    tmp = root / "index.json.tmp"
    tmp.write_text(json.dumps(index))
    tmp.replace(root / "index.json")


def _index_digest(root: Path, tag: str) -> str | None:
    for m in _read_index(root).get("manifests") or []:
        if (m.get("annotations") or {}).get(_REF_NAME) == tag and isinstance(m.get("digest"), str):
            return str(m["digest"])
    return None


@dataclass
class CachePlan:
    """The cache part of one solve: request entries, the session store, and the
    client-side step after the build (``index.json`` of local cache exports)."""

    exports: list[control.CacheOptionsEntry]
    imports: list[control.CacheOptionsEntry]
    store: LocalCacheStore | None
    #: local export dir -> tag to record the cache manifest under
    indexes: dict[Path, str]
    #: OCI layout directory of an :class:`OCILayoutExport`, updated after the build
    layout: Path | None = None

    def options_pb(self) -> control.CacheOptions | None:
        if not self.exports and not self.imports:
            return None
        return control.CacheOptions(exports=self.exports, imports=self.imports)

    async def finish(self, exporter_response: Mapping[str, str]) -> None:
        """Record the exported cache manifest in each local cache dir's ``index.json``
        and the exported image in the OCI layout directory's."""
        text = exporter_response.get("cache.manifest")
        if text and self.indexes:
            descriptor = json.loads(text)
            for root, tag in self.indexes.items():
                await anyio.to_thread.run_sync(_put_index, root, descriptor, tag)
        encoded = exporter_response.get("containerimage.descriptor")
        if self.layout is not None and encoded:
            image = json.loads(base64.b64decode(encoded))
            names = [n for n in exporter_response.get("image.name", "").split(",") if n]
            if not names:
                await anyio.to_thread.run_sync(_put_index, self.layout, image, "latest")
            for n in names:
                await anyio.to_thread.run_sync(_put_index, self.layout, image, _tag_of(n), n)


async def plan_cache(
    exports: Sequence[CacheExport], imports: Sequence[CacheImport], outputs: Sequence[Export] = ()
) -> CachePlan:
    """Turn cache options into request entries; local dirs get a session content store.

    A local import whose ``index.json`` has no entry for its tag is skipped (as in Go).
    ``outputs`` (the solve's exporters): an :class:`OCILayoutExport` directory is served
    as the content store ``export`` too.
    """
    stores: dict[str, Path] = {}
    indexes: dict[Path, str] = {}
    layouts = [e.dest for e in outputs if isinstance(e, OCILayoutExport)]
    if len(layouts) > 1:
        raise ValueError("only one OCILayoutExport per solve (the daemon has one 'export' store)")
    layout = Path(layouts[0]) if layouts else None
    if layout is not None:
        await anyio.Path(layout).mkdir(parents=True, exist_ok=True)
        stores[EXPORT_STORE] = layout
    export_pb: list[control.CacheOptionsEntry] = []
    import_pb: list[control.CacheOptionsEntry] = []
    for ex in exports:
        attrs = dict(ex.attrs)
        if ex.type == "local":
            root = Path(attrs["dest"])
            await anyio.Path(root).mkdir(parents=True, exist_ok=True)
            stores["local:" + attrs["dest"]] = root
            indexes[root] = attrs.get("tag", "latest")
        export_pb.append(control.CacheOptionsEntry(type=ex.type, attrs=attrs))
    for im in imports:
        attrs = dict(im.attrs)
        if im.type == "local":
            root = Path(attrs["src"])
            if not attrs.get("digest"):
                digest = await anyio.to_thread.run_sync(_index_digest, root, attrs.get("tag", "latest"))
                if digest is None:
                    continue
                attrs["digest"] = digest
            stores["local:" + attrs["src"]] = root
        import_pb.append(control.CacheOptionsEntry(type=im.type, attrs=attrs))
    store = LocalCacheStore(stores) if stores else None
    return CachePlan(exports=export_pb, imports=import_pb, store=store, indexes=indexes, layout=layout)

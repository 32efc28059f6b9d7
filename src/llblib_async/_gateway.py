"""Client side of a gateway build: ``LLBBridge`` calls bound to one build ref.

``Control.Solve`` with no definition and no frontend makes the daemon register a
*gateway forwarder* for the request's ref and wait for the client to drive the build
through ``moby.buildkit.v1.frontend.LLBBridge`` calls carrying the metadata
``buildkit-controlapi-buildid: <ref>`` (protocol notes §4.1), ending with ``Return``.
"""

from __future__ import annotations

import stat as _stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from grpclib.client import Channel

from ._errors_grpc import translating_errors
from ._pb.fsutil import types as fstypes
from ._pb.moby.buildkit import v1 as control
from ._pb.moby.buildkit.v1 import frontend as gw
from ._pb.pb import Definition as PbDefinition

BUILD_ID_HEADER = "buildkit-controlapi-buildid"

# Go FileMode type bits (io/fs) -> POSIX file type bits.
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_NAMED_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_DEVICE = 1 << 26
_GO_CHAR_DEVICE = 1 << 21


def _posix_mode(go_mode: int) -> int:
    perm = go_mode & 0o7777 & ~0o7000 | _go_special_bits(go_mode)
    if go_mode & _GO_DIR:
        return _stat.S_IFDIR | perm
    if go_mode & _GO_SYMLINK:
        return _stat.S_IFLNK | perm
    if go_mode & _GO_NAMED_PIPE:
        return _stat.S_IFIFO | perm
    if go_mode & _GO_SOCKET:
        return _stat.S_IFSOCK | perm
    if go_mode & _GO_DEVICE:
        return (_stat.S_IFCHR if go_mode & _GO_CHAR_DEVICE else _stat.S_IFBLK) | perm
    return _stat.S_IFREG | perm


def _go_special_bits(go_mode: int) -> int:
    bits = 0
    if go_mode & (1 << 23):  # ModeSetuid
        bits |= _stat.S_ISUID
    if go_mode & (1 << 22):  # ModeSetgid
        bits |= _stat.S_ISGID
    if go_mode & (1 << 20):  # ModeSticky
        bits |= _stat.S_ISVTX
    return bits


@dataclass(frozen=True, slots=True)
class FileStat:
    """One file of a build result, as the daemon reports it.

    ``mode`` is POSIX (``stat.S_ISDIR(st.mode)`` works); ``mod_time`` is in ns since
    the epoch.
    """

    path: str
    mode: int
    size: int
    uid: int
    gid: int
    mod_time: int
    linkname: str = ""

    @classmethod
    def _from_pb(cls, st: fstypes.Stat) -> FileStat:
        return cls(
            path=st.path,
            mode=_posix_mode(st.mode),
            size=st.size,
            uid=st.uid,
            gid=st.gid,
            mod_time=st.mod_time,
            linkname=st.linkname,
        )

    @property
    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self.mode)


class Gateway:
    """The ``LLBBridge`` calls of one gateway build (``ref``) on a daemon connection."""

    def __init__(self, channel: Channel, ref: str, address: str) -> None:
        self.ref = ref
        self.address = address
        self._stub = gw.LlbBridgeStub(channel, metadata=[(BUILD_ID_HEADER, ref)])

    async def solve(
        self,
        definition: PbDefinition,
        *,
        evaluate: bool = False,
        cache_imports: Sequence[control.CacheOptionsEntry] = (),
    ) -> gw.Result:
        request = gw.SolveRequest(
            definition=definition,
            allow_result_return=True,
            allow_result_array_ref=True,
            evaluate=evaluate,
            cache_imports=[gw.CacheOptionsEntry(type=c.type, attrs=dict(c.attrs)) for c in cache_imports],
        )
        with translating_errors("LLBBridge.Solve", self.address):
            response = await self._stub.solve(request)
        if response.result is None:
            return gw.Result()
        return response.result

    async def read_file(self, ref: str, path: str, *, offset: int = 0, length: int | None = None) -> bytes:
        request = gw.ReadFileRequest(ref=ref, file_path=path)
        if offset or length is not None:
            request.range = gw.FileRange(offset=offset, length=length if length is not None else 0)
        with translating_errors("LLBBridge.ReadFile", self.address):
            response = await self._stub.read_file(request)
        return bytes(response.data)

    async def read_dir(self, ref: str, path: str, *, include_pattern: str = "") -> list[FileStat]:
        request = gw.ReadDirRequest(ref=ref, dir_path=path, include_pattern=include_pattern)
        with translating_errors("LLBBridge.ReadDir", self.address):
            response = await self._stub.read_dir(request)
        return [FileStat._from_pb(e) for e in response.entries]

    async def stat_file(self, ref: str, path: str) -> FileStat:
        with translating_errors("LLBBridge.StatFile", self.address):
            response = await self._stub.stat_file(gw.StatFileRequest(ref=ref, path=path))
        if response.stat is None:
            raise FileNotFoundError(path)
        return FileStat._from_pb(response.stat)

    async def return_result(self, result: gw.Result) -> None:
        with translating_errors("LLBBridge.Return", self.address):
            await self._stub.return_(gw.ReturnRequest(result=result))


@dataclass(frozen=True, slots=True)
class Result:
    """The result of a request's gateway solve, handed to result handlers before export.

    ``ref`` is the result's reference id (``None`` for an empty result, e.g. a solve
    of scratch); ``refs`` holds per-platform refs of multi-platform results;
    ``metadata`` the result metadata. ``read_file``/``read_dir``/``stat`` read from
    ``ref`` (or ``refs[platform]``); reading forces the (lazy) solve, so a failing
    build raises :class:`~llblib_async.errors.SolveError` here.
    """

    ref: str | None
    refs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    metadata: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    _gateway: Gateway | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _from_pb(cls, result: gw.Result, gateway: Gateway) -> Result:
        refs = {k: v.id for k, v in result.refs.refs.items()} if result.refs is not None else {}
        return cls(
            ref=result.ref.id if result.ref is not None and result.ref.id else None,
            refs=MappingProxyType(refs),
            metadata=MappingProxyType(dict(result.metadata)),
            _gateway=gateway,
        )

    def _target(self, platform: str | None) -> tuple[Gateway, str]:
        if self._gateway is None:
            raise RuntimeError("this Result is not bound to a running build")
        if platform is not None:
            try:
                return self._gateway, self.refs[platform]
            except KeyError:
                raise LookupError(f"no result for platform {platform!r} (have {sorted(self.refs)})") from None
        if self.ref is None:
            raise LookupError("the result has no single ref (empty or multi-platform: pass platform=)")
        return self._gateway, self.ref

    async def read_file(
        self, path: str, *, offset: int = 0, length: int | None = None, platform: str | None = None
    ) -> bytes:
        gateway, ref = self._target(platform)
        return await gateway.read_file(ref, path, offset=offset, length=length)

    async def read_dir(
        self, path: str, *, include_pattern: str = "", platform: str | None = None
    ) -> list[FileStat]:
        gateway, ref = self._target(platform)
        return await gateway.read_dir(ref, path, include_pattern=include_pattern)

    async def stat(self, path: str, *, platform: str | None = None) -> FileStat:
        gateway, ref = self._target(platform)
        return await gateway.stat_file(ref, path)

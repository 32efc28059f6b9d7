"""Client side of a gateway build: the ``LLBBridge`` calls bound to one build ref.

``Control.Solve`` with no definition and no frontend makes the daemon register a
*gateway forwarder* for the request's ref and wait for the client to drive the build
through ``moby.buildkit.v1.frontend.LLBBridge`` calls carrying the metadata
``buildkit-controlapi-buildid: <ref>`` (protocol notes §4.1), ending with ``Return``.
:class:`Bridge` makes those calls for one build; every request of a
:class:`~llblib_async.Session` is such a build (the request pipeline drives it).
Containers on the build worker (``NewContainer``, ``ExecProcess``) will be calls of
this bridge too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from grpclib.client import Channel

from .._pb import pb
from .._pb.moby.buildkit import v1 as control
from .._pb.moby.buildkit.v1 import frontend as gw
from .._pb.pb import Definition as PbDefinition
from .._wire.grpc_errors import translating_errors
from .filestat import FileStat
from .result import Result

__all__ = ["BUILD_ID_HEADER", "Bridge"]

BUILD_ID_HEADER = "buildkit-controlapi-buildid"


class Bridge:
    """The ``LLBBridge`` calls of one gateway build (``ref``) on a daemon connection.

    Errors are translated as for any call (a failed ``Solve`` is a
    :class:`~llblib_async.errors.SolveError`), ``address`` labels them.
    """

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

    async def solve_frontend(
        self,
        frontend: str,
        *,
        opts: Mapping[str, str],
        inputs: Mapping[str, PbDefinition],
        evaluate: bool = False,
        cache_imports: Sequence[control.CacheOptionsEntry] = (),
    ) -> gw.Result:
        """``LLBBridge.Solve`` of a frontend (``dockerfile.v0``, ``gateway.v0``...) in this build.

        A failure is a :class:`~llblib_async.errors.SolveError` whose ``__cause__`` keeps
        the daemon's error details (source ranges, failed op) for the pipeline to read.
        """
        request = gw.SolveRequest(
            frontend=frontend,
            frontend_opt=dict(opts),
            frontend_inputs=dict(inputs),
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

    async def resolve_image_config(
        self, ref: str, *, platform: pb.Platform | None, resolve_mode: str = "default", session_id: str = ""
    ) -> tuple[str, str, bytes]:
        """``LLBBridge.ResolveImageConfig``: ``(ref, digest, config bytes)`` as the daemon resolves
        them, with the registry credentials of session ``session_id``."""
        request = gw.ResolveImageConfigRequest(
            ref=ref, platform=platform, resolve_mode=resolve_mode, session_id=session_id
        )
        with translating_errors("LLBBridge.ResolveImageConfig", self.address):
            response = await self._stub.resolve_image_config(request)
        return response.ref or ref, response.digest, bytes(response.config)

    async def resolve_source_meta(
        self, identifier: str, *, platform: pb.Platform | None, resolve_mode: str = "default"
    ) -> tuple[str, str, bytes]:
        """``LLBBridge.ResolveSourceMeta`` of an image source: ``(identifier, digest, config)``."""
        request = gw.ResolveSourceMetaRequest(
            source=pb.SourceOp(identifier=identifier),
            platform=platform,
            resolve_mode=resolve_mode,
            image=gw.ResolveSourceImageRequest(),
        )
        with translating_errors("LLBBridge.ResolveSourceMeta", self.address):
            response = await self._stub.resolve_source_meta(request)
        image = response.image
        if image is None:
            return identifier, "", b""
        source = response.source.identifier if response.source is not None else identifier
        return source, image.digest, bytes(image.config)

    def result(self, result: gw.Result) -> Result:
        """``result`` as the :class:`~.result.Result` handed to handlers, reading through this bridge."""
        return Result.from_pb(result, self)

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
        return [FileStat.from_pb(e) for e in response.entries]

    async def stat_file(self, ref: str, path: str) -> FileStat:
        with translating_errors("LLBBridge.StatFile", self.address):
            response = await self._stub.stat_file(gw.StatFileRequest(ref=ref, path=path))
        if response.stat is None:
            raise FileNotFoundError(path)
        return FileStat.from_pb(response.stat)

    async def return_result(self, result: gw.Result) -> None:
        with translating_errors("LLBBridge.Return", self.address):
            await self._stub.return_(gw.ReturnRequest(result=result))

"""Client side of a gateway build: the ``LLBBridge`` calls bound to one build ref.

``Control.Solve`` with no definition and no frontend makes the daemon register a
*gateway forwarder* for the request's ref and wait for the client to drive the build
through ``moby.buildkit.v1.frontend.LLBBridge`` calls carrying the metadata
``buildkit-controlapi-buildid: <ref>`` (protocol notes §4.1), ending with ``Return``.
:class:`Bridge` makes those calls for one build; every request of a
:class:`~llblib_async.Session` is such a build (the request pipeline drives it).
Containers on the build worker (``NewContainer``, ``ExecProcess``, ``ReleaseContainer``)
are calls of this bridge too: :meth:`Bridge.container` opens one
(:mod:`.container`), :meth:`Bridge.resolve_container` solves the mounts of a
:class:`~.container_spec.ContainerSpec`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

import anyio
from grpclib.client import Channel

from .. import llb
from .._pb import pb
from .._pb.moby.buildkit import v1 as control
from .._pb.moby.buildkit.v1 import frontend as gw
from .._pb.pb import Definition as PbDefinition
from .._wire.grpc_errors import translating_errors
from ..process_result import ProcessResult
from .container import Container
from .container_spec import ContainerSpec, input_definition
from .filestat import FileStat
from .options import ContainerOptions
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
        self.channel = channel
        self.metadata = [(BUILD_ID_HEADER, ref)]
        self._stub = gw.LlbBridgeStub(channel, metadata=self.metadata)

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

    def container(self, spec: ContainerSpec, *, container_id: str | None = None) -> Container:
        """A container of this build (``async with`` opens and releases it); ``spec``'s
        mounts must be resolved (:meth:`resolve_container`)."""
        if spec.unresolved:
            raise ValueError("the container's mounts are not solved yet: resolve_container() first")
        return Container(
            stub=self._stub,
            channel=self.channel,
            metadata=self.metadata,
            address=self.address,
            spec=spec,
            container_id=container_id,
        )

    async def resolve_container(
        self, spec: ContainerSpec, definition: PbDefinition, head: str
    ) -> ContainerSpec:
        """Solve each mount source of ``spec`` (inputs of op ``head`` in ``definition``) to a result id.

        The solves are lazy: ``NewContainer`` builds the sources (one round trip less; a
        failing source fails it with the same build error).
        """
        resolved: dict[int, str] = {}
        errors: list[Exception] = []

        async def solve(mount: int, index: int) -> None:
            try:
                result = await self.solve(input_definition(definition, head, index), evaluate=False)
            except Exception as err:  # raised below as it is, not in an ExceptionGroup
                errors.append(err)
                tg.cancel_scope.cancel()
                return
            resolved[mount] = result.ref.id if result.ref is not None else ""

        async with anyio.create_task_group() as tg:
            for mount, index in spec.unresolved.items():
                tg.start_soon(solve, mount, index)
        if errors:
            raise errors[0]
        return spec.with_refs(resolved)

    async def prepare_container(
        self, definition: PbDefinition, *, root_ref: str | None = None
    ) -> ContainerSpec:
        """The container of the exec ``definition`` ends with, its mounts solved (``root_ref``
        replaces its root)."""
        spec, head = ContainerSpec.from_definition(definition)
        if root_ref is not None:
            spec = spec.with_root_ref(root_ref)
        return await self.resolve_container(spec, definition, head)

    @contextlib.asynccontextmanager
    async def open_container(
        self, options: ContainerOptions, *, root: llb.State | None = None, root_ref: str | None = None
    ) -> AsyncIterator[Container]:
        """A container made of ``options`` on ``root`` (a State) or on the result ``root_ref``."""
        definition = await llb.marshal_async(options.exec_state(root if root is not None else llb.scratch()))
        spec = await self.prepare_container(definition.to_pb(), root_ref=root_ref)
        async with self.container(spec) as ctr:
            yield ctr

    async def run_container(
        self, definition: PbDefinition, options: ContainerOptions
    ) -> tuple[ProcessResult, dict[str, llb.State]]:
        """Run the container request's exec ``definition`` with ``options``' process settings;
        the process's result and a State of each of ``options.keep_mounts``."""
        spec = await self.prepare_container(definition)
        async with self.container(spec) as ctr:
            result = await ctr.run_with(options)
        return result, {mount: llb.local(path) for mount, path in options.keep_mounts.items()}

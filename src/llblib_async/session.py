"""A BuildKit session shared by many build requests (llblib's ``Session``).

One :class:`Session` is one ``Control.Session`` on the daemon serving, for every
request made through it:

* ``FileSync`` for the local directories of every request (a request's locals are
  added when it starts, so requests made after the session opened may use new ones),
* ``FileSend`` for the exporters that send their output back to the client,
* the solver's other attachables (secrets, SSH/socket forwards, auth...).

Each :meth:`Session.do` is a *client-side gateway build*: ``Control.Solve`` without a
definition (the daemon then waits for the client), ``LLBBridge.Solve`` of the
request's definition, the request's result handlers (which may read files of the
result), ``LLBBridge.Return`` -- after which the daemon runs the exporters and
``Control.Solve`` returns. Any number of ``do`` calls may run concurrently.

**Exports to the client are serialised.** The daemon tells us which exporter a
``FileSend`` call belongs to only by its index in the request's exporter list
(``buildkit-attachable-exporter-id``); no build ref or other per-request header is
sent (BuildKit v0.34 ``filesync.CopyToCaller``/``CopyFileWriter``). So a request
with client-side exports (``LocalExport``, ``TarExport``) holds the session's export
lock from just before its ``Return`` until its ``Control.Solve`` ended; solving and
result handlers still run in parallel, and requests without client-side exports
never wait for the lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import anyio

from ._errors_grpc import TRANSLATED_ERRORS, translating_errors
from ._fsutil.receive import FileSendProvider, Target
from ._fsutil.send import FileSyncProvider, SendStats
from ._gateway import Gateway, Result
from ._pb.moby.buildkit import v1 as control
from ._pb.pb import Definition as PbDefinition
from ._session import SessionHandle
from .client import Client, new_id
from .errors import BuildKitError, ConnectionLostError, LocalDirError
from .exporters import EXPORT_STORE, CachePlan, LocalCacheStore, plan_cache
from .llb.image_config import EXPORTER_IMAGE_CONFIG_KEY
from .progress import ProgressSink, StatusUpdate
from .request import Request
from .solve import (
    STATUS_DRAIN_TIMEOUT,
    SolveResult,
    _exporter_pb,
    _FailureContext,
    _unsupported_exporter,
    upload_failure,
)

__all__ = ["RESPONSE_IMAGE_CONFIG_KEY", "Session", "SessionClosedError"]


#: Key of the request State's image config (JSON) in ``SolveResult.exporter_response``
#: (Go llblib's ``ExporterImageConfigKey``).
RESPONSE_IMAGE_CONFIG_KEY = "llblib.containerimage.config"


class SessionClosedError(BuildKitError, RuntimeError):
    """The session was closed (its ``async with`` block left) before or while a request ran."""


class Session:
    """Runs build requests over one BuildKit session; create it with ``Solver.session``."""

    def __init__(
        self,
        client: Client,
        handle: SessionHandle,
        *,
        filesync: FileSyncProvider,
        filesend: FileSendProvider,
        content_store: LocalCacheStore,
        progress: ProgressSink,
    ) -> None:
        self._client = client
        self._handle = handle
        self._filesync = filesync
        self._filesend = filesend
        self._content_store = content_store
        self._sink = progress
        self._export_lock = asyncio.Lock()
        self._running: dict[anyio.CancelScope, anyio.Event] = {}
        self._closing = False

    @property
    def id(self) -> str:
        """The BuildKit session id (``SolveRequest.session``)."""
        return self._handle.id

    @property
    def locals(self) -> Mapping[str, Path]:
        """Every local directory the session serves so far, by name."""
        return MappingProxyType(dict(self._filesync.dirs))

    @property
    def transport(self) -> str:
        """What carries the session: ``"docker-hijack"`` (Docker's ``/session``) or
        ``"control-session"`` (``Control.Session`` on the gRPC connection)."""
        return self._handle.transport

    @property
    def uploads(self) -> tuple[SendStats, ...]:
        """One entry per local-directory transfer so far (name, entries listed, files
        the daemon asked for, bytes sent): shows what was (not) sent again."""
        return tuple(self._filesync.transfers)

    def add_local(self, name: str, path: Path) -> None:
        """Serve ``path`` as ``local://name`` (also done for each request's locals).

        Raises :class:`~llblib_async.errors.LocalDirError` if ``path`` is not a
        directory or ``name`` is already served from another directory.
        """
        path = Path(path).absolute()
        if not path.is_dir():
            reason = "does not exist" if not path.exists() else "is not a directory"
            raise LocalDirError(name, str(path), reason)
        current = self._filesync.dirs.get(name)
        if current is not None and current != path:
            raise LocalDirError(name, str(path), f"the name is already served from {current}")
        self._filesync.dirs[name] = path

    async def do(self, request: Request) -> SolveResult:
        """Build ``request``, run its result handlers and exporters; return the exporter response.

        Raises :class:`~llblib_async.errors.SolveError` when the build fails (with the
        failing step's log tail), the exception of a failing result handler unchanged,
        :class:`~llblib_async.errors.ConnectionLostError` when the daemon goes away,
        :class:`SessionClosedError` when the session is closed meanwhile. Cancelling
        the calling task cancels the build in the daemon; other requests and the
        session are not affected by either.
        """
        if self._closing:
            raise SessionClosedError("the session is closed")
        self._handle.raise_if_closed()
        scope = anyio.CancelScope()
        done = anyio.Event()
        self._running[scope] = done
        try:
            with scope:
                return await self._handle.guard(lambda: self._run(request))
        finally:
            del self._running[scope]
            done.set()
        # Only reached when _aclose cancelled the scope.
        raise SessionClosedError("the session was closed while the request ran")

    async def _aclose(self) -> None:
        """Cancel the requests still running and wait until they have ended."""
        self._closing = True
        pending = list(self._running.items())
        for scope, _ in pending:
            scope.cancel()
        with anyio.CancelScope(shield=True):
            for _, done in pending:
                await done.wait()

    async def _run(self, request: Request) -> SolveResult:
        definition = await request.marshal()
        for name, path in definition.locals.items():
            self.add_local(name, path)
        uploads_before = len(self._filesync.transfers)
        exports = request.exports
        targets = {i: t for i, e in enumerate(exports) if (t := e.session_target()) is not None}
        cache = await plan_cache(request.cache_exports, request.cache_imports, exports)
        if cache.store is not None:
            # Local cache dirs are keyed by their path: requests can share them. The
            # OCI layout export store has one fixed id: it is set under the export lock.
            shared = {k: v for k, v in cache.store.stores.items() if k != EXPORT_STORE}
            self._content_store.stores.update(shared)
        ref = new_id()
        failure = _FailureContext()
        image_config = request.state.image_config if request.state is not None else None
        exporters = [_exporter_pb(e, image_config) for e in exports]
        solve_request = control.SolveRequest(
            ref=ref,
            session=self.id,
            exporters=exporters,
            entitlements=list(request.entitlements),
            frontend_attrs=dict(request.frontend_attrs),
        )
        cache_options = cache.options_pb()
        if cache_options is not None:
            solve_request.cache = cache_options
        if exporters and self._client.is_moby:
            solve_request.exporter_deprecated = exporters[0].type
            solve_request.exporter_attrs_deprecated = dict(exporters[0].attrs)

        async def follow_status() -> None:
            try:
                async for msg in self._client.control.status(control.StatusRequest(ref=ref)):
                    update = StatusUpdate.from_pb(msg, request=request.label)
                    failure.observe(update)
                    self._sink.update(update)
            except TRANSLATED_ERRORS:
                pass  # progress is best effort: the Solve call reports the real outcome

        response: control.SolveResponse | None = None
        failed: BuildKitError | None = None
        other: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow_status)
            try:
                response = await self._build(ref, solve_request, definition.to_pb(), request, targets, cache)
            except BuildKitError as err:
                failed = err
            except Exception as err:
                # Not the build's failure (a result handler's, say): no logs to wait for.
                # Raised outside the task group, which would wrap it in an ExceptionGroup.
                other = err
                tg.cancel_scope.cancel()
            tg.cancel_scope.deadline = anyio.current_time() + STATUS_DRAIN_TIMEOUT
        if other is not None:
            raise other
        if failed is not None:
            mapped = _unsupported_exporter(failed, exports) or upload_failure(
                self._filesync, definition.locals, uploads_before
            )
            if mapped is not None:
                raise mapped from failed
            raise failure.enrich(failed)
        assert response is not None
        await cache.finish(response.exporter_response)
        exporter_response = dict(response.exporter_response)
        if image_config is not None:
            exporter_response.setdefault(RESPONSE_IMAGE_CONFIG_KEY, image_config.to_json().decode())
        return SolveResult(ref=ref, exporter_response=MappingProxyType(exporter_response))

    async def _build(
        self,
        ref: str,
        solve_request: control.SolveRequest,
        definition: PbDefinition,
        request: Request,
        targets: dict[int, Target],
        cache: CachePlan,
    ) -> control.SolveResponse:
        """Control.Solve (gateway forwarder) and the LLBBridge callback side by side."""
        gateway = Gateway(self._client.connection.channel, ref, self._client.address)
        responses: list[control.SolveResponse] = []
        errors: list[Exception] = []
        holding_lock = False

        async def control_solve() -> None:
            try:
                with translating_errors("Solve", self._client.address):
                    responses.append(await self._client.control.solve(solve_request))
            except BuildKitError as e:
                errors.append(e)
                tg.cancel_scope.cancel()

        async def callback() -> None:
            nonlocal holding_lock
            try:
                pb_result = await gateway.solve(
                    definition, evaluate=request.evaluate, cache_imports=cache.imports
                )
                result = Result._from_pb(pb_result, gateway)
                for handler in request.result_handlers:
                    await handler(result)
                if targets or cache.layout is not None:
                    await self._export_lock.acquire()
                    holding_lock = True
                    self._filesend.targets = dict(targets)
                    if cache.layout is not None:
                        self._content_store.stores[EXPORT_STORE] = cache.layout
                # Docker 20.10's moby exporter ignores the containerimage.config attr and
                # reads the config only from the result metadata (newer exporters read both,
                # the attr winning): put the exporter's config there too.
                for export, exporter in zip(request.exports, solve_request.exporters, strict=True):
                    config = exporter.attrs.get(EXPORTER_IMAGE_CONFIG_KEY)
                    if config is not None and getattr(export, "accepts_image_config", False):
                        pb_result.metadata.setdefault(EXPORTER_IMAGE_CONFIG_KEY, config.encode())
                        break
                await gateway.return_result(pb_result)
            except Exception as e:
                errors.append(e)
                tg.cancel_scope.cancel()  # cancelling Control.Solve cancels the build

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(control_solve)
                tg.start_soon(callback)
        finally:
            if holding_lock:
                self._filesend.targets = {}
                self._content_store.stores.pop(EXPORT_STORE, None)
                self._export_lock.release()
        if errors:
            raise errors[0]
        if not responses:
            raise ConnectionLostError(self._client.address, "Solve ended without a response")
        return responses[0]

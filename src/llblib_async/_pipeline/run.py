"""One request, end to end: the single request pipeline.

Every build goes this way -- :meth:`Session.do <llblib_async.Session.do>`, and
``client.solve``, which is a one-request session:

1. marshal the request (lazy states are resolved now) and serve its local
   directories in the session;
2. plan its cache (:mod:`.cache_plan`), take the session's
   :class:`~.exports.ExportRoute` for its client-side exports (the session itself when
   free, else a short-lived private session, so concurrent downloads overlap) and build
   its ``SolveRequest`` (:mod:`.solve_request`): a *gateway build* with no definition,
   naming that session;
3. follow ``Control.Status`` for its ref into the session's progress sink and a
   :class:`~.failures.FailureLog`;
4. ``Control.Solve`` (the daemon's gateway forwarder for the ref) and, side by side,
   the client's half of the gateway build through a
   :class:`~llblib_async.gateway.bridge.Bridge`: ``LLBBridge.Solve`` of the definition,
   the result handlers, ``Return``; the daemon then runs the exporters and
   ``Control.Solve`` returns. If either half fails the other is cancelled, and
   cancelling ``Control.Solve`` cancels the build in the daemon;
5. let the Status stream deliver the last logs, turn a failure into the most telling
   error (:func:`~.failures.explain`), record exported manifests in ``index.json`` and
   answer the :class:`~llblib_async.SolveResult`.

A result handler's own exception is raised unchanged (not wrapped in an
``ExceptionGroup``); so is cancellation of the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from .._identity import new_id
from .._pb.moby.buildkit import v1 as control
from .._pb.pb import Definition as PbDefinition
from .._wire.connection import Connection
from .._wire.grpc_errors import TRANSLATED_ERRORS, translating_errors
from ..attachables.content_store import ContentStore
from ..attachables.filesend import Target
from ..attachables.filesync import FileSyncProvider
from ..errors import BuildKitError, ConnectionLostError
from ..gateway.bridge import Bridge
from ..progress import ProgressSink, StatusUpdate
from ..request import RESPONSE_IMAGE_CONFIG_KEY, Request, SolveResult
from .cache_plan import CachePlan, plan_cache
from .exports import ExportRoute
from .failures import FailureLog, explain
from .solve_request import put_image_config, solve_request

__all__ = ["STATUS_DRAIN_TIMEOUT", "SessionServices", "run_request"]

# How long the Status stream may keep going after Solve returned before we stop
# listening: the daemon normally ends it at once (Go's client waits 5 s too).
STATUS_DRAIN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class SessionServices:
    """What a request needs of the session it runs in."""

    conn: Connection
    session_id: str
    filesync: FileSyncProvider
    content_store: ContentStore
    exports: ExportRoute
    progress: ProgressSink


async def run_request(request: Request, session: SessionServices) -> SolveResult:
    """Build ``request`` in ``session``, run its result handlers and exporters."""
    definition = await request.marshal()
    for name, path in definition.locals.items():
        session.filesync.serve(name, path)
    uploads_before = len(session.filesync.transfers)
    cache = await plan_cache(request.cache_exports, request.cache_imports, request.exports)
    # Local cache dirs are keyed by their path, so requests can share them; the OCI
    # layout store has one fixed id and is set while the request holds the export route.
    session.content_store.stores.update(cache.stores)
    ref = new_id()
    targets: dict[int, Target] = {
        i: t for i, e in enumerate(request.exports) if (t := e.session_target()) is not None
    }
    stub = control.ControlStub(session.conn.channel)
    log = FailureLog()

    async def follow_status() -> None:
        try:
            async for msg in stub.status(control.StatusRequest(ref=ref)):
                update = StatusUpdate.from_pb(msg, request=request.label)
                log.observe(update)
                session.progress.update(update)
        except TRANSLATED_ERRORS:
            pass  # progress is best effort: the Solve call reports the real outcome

    response: control.SolveResponse | None = None
    failed: BuildKitError | None = None
    other: Exception | None = None
    async with session.exports.route(targets, cache.layout) as session_id:
        message = solve_request(
            request, ref=ref, session_id=session_id, cache=cache, is_moby=session.conn.is_moby
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow_status)
            try:
                response = await _gateway_build(session, stub, message, definition.to_pb(), request, cache)
            except BuildKitError as err:
                failed = err
            except Exception as err:
                # Not the build's failure (a result handler's, say): no logs to wait for.
                # Raised outside the task group, which would wrap it in an ExceptionGroup.
                other = err
                tg.cancel_scope.cancel()
            # Let the Status stream deliver the last logs (it normally ends by itself).
            tg.cancel_scope.deadline = anyio.current_time() + STATUS_DRAIN_TIMEOUT
    if other is not None:
        raise other
    if failed is not None:
        raise explain(
            failed,
            exports=request.exports,
            filesync=session.filesync,
            locals=definition.locals,
            uploads_before=uploads_before,
            log=log,
        )
    assert response is not None
    await cache.finish(response.exporter_response)
    exporter_response = dict(response.exporter_response)
    if request.image_config is not None:
        exporter_response.setdefault(RESPONSE_IMAGE_CONFIG_KEY, request.image_config.to_json().decode())
    return SolveResult.of(request, ref, exporter_response)


async def _gateway_build(
    session: SessionServices,
    stub: control.ControlStub,
    message: control.SolveRequest,
    definition: PbDefinition,
    request: Request,
    cache: CachePlan,
) -> control.SolveResponse:
    """``Control.Solve`` (the gateway forwarder) and the ``LLBBridge`` side, side by side."""
    address = session.conn.address
    bridge = Bridge(session.conn.channel, message.ref, address)
    responses: list[control.SolveResponse] = []
    errors: list[Exception] = []

    async def control_solve() -> None:
        try:
            with translating_errors("Solve", address):
                responses.append(await stub.solve(message))
        except BuildKitError as e:
            errors.append(e)
            tg.cancel_scope.cancel()

    async def bridge_side() -> None:
        try:
            pb_result = await bridge.solve(definition, evaluate=request.evaluate, cache_imports=cache.imports)
            result = bridge.result(pb_result)
            for handler in request.result_handlers:
                await handler(result)
            put_image_config(pb_result, request.exports, message.exporters)
            await bridge.return_result(pb_result)
        except Exception as e:
            errors.append(e)
            tg.cancel_scope.cancel()  # cancelling Control.Solve cancels the build

    async with anyio.create_task_group() as tg:
        tg.start_soon(control_solve)
        tg.start_soon(bridge_side)
    if errors:
        raise errors[0]
    if not responses:
        raise ConnectionLostError(address, "Solve ended without a response")
    return responses[0]

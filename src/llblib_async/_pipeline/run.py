"""One request, end to end: the single request pipeline.

Every build goes this way -- :meth:`Session.do <llblib_async.Session.do>`, and
``client.solve``, which is a one-request session:

1. marshal the request (lazy states are resolved now) and serve its local
   directories in the session;
2. plan its cache (:mod:`.cache_plan`) and build its ``SolveRequest``
   (:mod:`.solve_request`): a *gateway build* with no definition;
3. follow ``Control.Status`` for its ref into the session's progress sink and a
   :class:`~.failures.FailureLog`;
4. ``Control.Solve`` (the daemon's gateway forwarder for the ref) and, side by side,
   the client's half of the gateway build through a
   :class:`~llblib_async.gateway.bridge.Bridge`: ``LLBBridge.Solve`` of the definition,
   the result handlers, claiming the session's :class:`~.exports.ExportRoute` when the
   request exports to the client, ``Return``; the daemon then runs the exporters and
   ``Control.Solve`` returns. If either half fails the other is cancelled, and
   cancelling ``Control.Solve`` cancels the build in the daemon;
5. let the Status stream deliver the last logs, turn a failure into the most telling
   error (:func:`~.failures.explain`), record exported manifests in ``index.json`` and
   answer the :class:`~llblib_async.SolveResult`.

A result handler's own exception is raised unchanged (not wrapped in an
``ExceptionGroup``); so is cancellation of the caller.

Two more kinds of request take the same way:

* a *container request* (``request.container``): instead of solving a result, the
  bridge side runs the container (:meth:`~llblib_async.gateway.bridge.Bridge.run_container`:
  its mounts solved, ``NewContainer``, the process, ``ReleaseContainer``) and returns an
  empty result; the process's :class:`~llblib_async.ProcessResult` is the answer's
  ``container``;
* ``request.on_error``: a failed ``LLBBridge.Solve`` whose error names the failed exec
  (``errdefs.Solve``) opens the ``OnError`` container(s) on the failed step's mounts
  (:mod:`llblib_async.gateway.on_error`) before the error is raised -- with the results
  on ``SolveError.debug`` -- or, with ``drop_error``, returned on the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import anyio

from .. import llb
from .._identity import new_id
from .._pb.moby.buildkit import v1 as control
from .._pb.moby.buildkit.v1 import frontend as gw
from .._pb.pb import Definition as PbDefinition
from .._wire.connection import Connection
from .._wire.grpc_errors import TRANSLATED_ERRORS, translating_errors
from ..attachables.content_store import ContentStore
from ..attachables.filesend import Target
from ..attachables.filesync import FileSyncProvider
from ..errors import BuildKitError, ConnectionLostError, SolveError
from ..gateway.bridge import Bridge
from ..gateway.on_error import debug_failed_step, failed_step
from ..process_result import ProcessResult
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


@dataclass
class _Outcome:
    """What the bridge side learnt besides the result: a container's process, a dropped error."""

    container: ProcessResult | None = None
    debug: tuple[ProcessResult, ...] = ()
    error: SolveError | None = None
    mounts: dict[str, llb.State] = field(default_factory=dict)


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
    message = solve_request(
        request, ref=ref, session_id=session.session_id, cache=cache, is_moby=session.conn.is_moby
    )
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
    outcome = _Outcome()
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow_status)
        try:
            response = await _gateway_build(
                session, stub, message, definition.to_pb(), request, cache, outcome
            )
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
    dropped = log.enrich(outcome.error) if outcome.error is not None else None
    return SolveResult(
        ref=ref,
        exporter_response=MappingProxyType(exporter_response),
        container=outcome.container,
        mounts=MappingProxyType(outcome.mounts),
        debug=outcome.debug,
        error=dropped if isinstance(dropped, SolveError) else None,
    )


async def _gateway_build(
    session: SessionServices,
    stub: control.ControlStub,
    message: control.SolveRequest,
    definition: PbDefinition,
    request: Request,
    cache: CachePlan,
    outcome: _Outcome,
) -> control.SolveResponse:
    """``Control.Solve`` (the gateway forwarder) and the ``LLBBridge`` side, side by side."""
    address = session.conn.address
    bridge = Bridge(session.conn.channel, message.ref, address)
    targets: dict[int, Target] = {
        i: t for i, e in enumerate(request.exports) if (t := e.session_target()) is not None
    }
    responses: list[control.SolveResponse] = []
    errors: list[Exception] = []
    holding_route = False

    async def control_solve() -> None:
        try:
            with translating_errors("Solve", address):
                responses.append(await stub.solve(message))
        except BuildKitError as e:
            errors.append(e)
            tg.cancel_scope.cancel()

    async def bridge_side() -> None:
        nonlocal holding_route
        try:
            if request.container is not None:
                outcome.container, outcome.mounts = await bridge.run_container(definition, request.container)
                await bridge.return_result(gw.Result())
                return
            solved = await _solve(bridge, definition, request, cache, outcome)
            if solved is None:  # failed, debugged, error dropped
                await bridge.return_result(gw.Result())
                return
            pb_result = solved
            result = bridge.result(pb_result)
            for handler in request.result_handlers:
                await handler(result)
            if targets or cache.layout is not None:
                await session.exports.claim(targets, cache.layout)
                holding_route = True
            put_image_config(pb_result, request.exports, message.exporters)
            await bridge.return_result(pb_result)
        except Exception as e:
            errors.append(e)
            tg.cancel_scope.cancel()  # cancelling Control.Solve cancels the build

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(control_solve)
            tg.start_soon(bridge_side)
    finally:
        if holding_route:
            session.exports.release()
    if errors:
        raise errors[0]
    if not responses:
        raise ConnectionLostError(address, "Solve ended without a response")
    return responses[0]


async def _solve(
    bridge: Bridge, definition: PbDefinition, request: Request, cache: CachePlan, outcome: _Outcome
) -> gw.Result | None:
    """``LLBBridge.Solve`` of the request; a failure goes through ``request.on_error`` first.

    ``None`` means the build failed and ``OnError.drop_error`` dropped the error
    (kept on ``outcome``).
    """
    on_error = request.on_error
    try:
        return await bridge.solve(
            definition, evaluate=request.evaluate or on_error is not None, cache_imports=cache.imports
        )
    except SolveError as err:
        spec = failed_step(err) if on_error is not None else None
        if on_error is None or spec is None:
            raise
        try:
            err.debug = await debug_failed_step(bridge.container, spec, on_error)
        except BuildKitError as debug_err:
            err.add_note(f"on_error could not debug the failed step: {debug_err}")
            raise err from err.__cause__
        if not on_error.drop_error:
            raise
        outcome.error, outcome.debug = err, err.debug
        return None

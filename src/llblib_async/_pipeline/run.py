"""One request, end to end: the single request pipeline.

Every build goes this way -- :meth:`Session.do <llblib_async.Session.do>`, and
``client.solve``, which is a one-request session:

1. plan its cache (:mod:`.cache_plan`), take the session's
   :class:`~.exports.ExportRoute` for its client-side exports (the session itself when
   free, else a short-lived private session, so concurrent downloads overlap) and build
   its ``SolveRequest`` (:mod:`.solve_request`): a *gateway build* with no definition,
   naming that session;
2. follow ``Control.Status`` for its ref into the session's progress sink and a
   :class:`~.failures.FailureLog`;
3. ``Control.Solve`` (the daemon's gateway forwarder for the ref) and, side by side,
   the client's half of the gateway build through a
   :class:`~llblib_async.gateway.bridge.Bridge`: marshal the request (lazy States are
   resolved now; frontend States run their frontend in this build, through
   :class:`FrontendBridge`) and serve its local directories, ``LLBBridge.Solve`` of the
   definition -- or, when the request's State *is* a frontend State, of the frontend
   itself, evaluated, so its result (per-platform refs and image configs) is what is
   exported and a failing step fails here --, for an image export of a State on
   ``llb.image`` the base image's config resolved through the session's
   ``image_resolver`` (in this build) and the State's config merged onto it like
   ``FROM`` (:func:`~llblib_async.llb.resolve_base_config`; the exporters read it from
   the result metadata; a failure is a :class:`~llblib_async.errors.BaseImageError`
   and cancels the build), the result handlers, ``Return``; the
   daemon then runs the exporters and ``Control.Solve`` returns. If either half fails
   the other is cancelled, and cancelling ``Control.Solve`` cancels the build in the
   daemon;
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

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import anyio

from .. import llb
from .._identity import new_id
from .._pb.moby.buildkit import v1 as control
from .._pb.moby.buildkit.v1 import frontend as gw
from .._wire.connection import Connection
from .._wire.grpc_errors import TRANSLATED_ERRORS, translating_errors
from ..attachables.content_store import ContentStore
from ..attachables.filesend import Target
from ..attachables.filesync import FileSyncProvider
from ..errors import BaseImageError, BuildKitError, ConnectionLostError, SolveError
from ..gateway.bridge import Bridge
from ..gateway.on_error import debug_failed_step, failed_step
from ..llb.base_config import using_base_resolver
from ..llb.frontend import (
    FrontendRequest,
    FrontendResult,
    current_frontend_runner,
    frontend_spec,
    using_frontend_runner,
)
from ..llb.image_config import EXPORTER_IMAGE_CONFIG_KEY
from ..llb.marshal import marshal_scope
from ..process_result import ProcessResult
from ..progress import ProgressSink, StatusUpdate
from ..request import RESPONSE_IMAGE_CONFIG_KEY, Request, SolveResult
from .cache_plan import CachePlan, plan_cache
from .exports import ExportRoute
from .failures import FailureLog, explain
from .solve_request import put_image_config, solve_request

__all__ = [
    "STATUS_DRAIN_TIMEOUT",
    "FrontendBridge",
    "SessionServices",
    "SolveTarget",
    "current_frontend_bridge",
    "marshal_states",
    "resolve_state",
    "run_request",
]

T = TypeVar("T")

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
    #: resolves the configs of base images (``llb.image``) for image exports: the
    #: session's ``image_resolver`` (one cache per session)
    image_resolver: llb.ImageConfigResolver | None = None


SolveTarget = Callable[["FrontendBridge", Request, CachePlan], Awaitable[gw.Result]]
"""What the client's half of a build solves (default: the request's frontend or definition)."""


async def run_request(
    request: Request, session: SessionServices, *, target: SolveTarget | None = None
) -> SolveResult:
    """Build ``request`` in ``session``, run its result handlers and exporters.

    ``target`` replaces what is solved (:func:`resolve_state` only marshals).
    """
    uploads_before = len(session.filesync.transfers)
    cache = await plan_cache(request.cache_exports, request.cache_imports, request.exports)
    # Local cache dirs are keyed by their path, so requests can share them; the OCI
    # layout store has one fixed id, set in the session the export route gives the request.
    session.content_store.stores.update(cache.stores)
    ref = new_id()
    targets: dict[int, Target] = {
        i: t for i, e in enumerate(request.exports) if (t := e.session_target()) is not None
    }
    stub = control.ControlStub(session.conn.channel)
    log = FailureLog()
    served = _Served()

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
    # A State on llb.image exported as an image: its config is merged onto the base's,
    # resolved in the build (below), so the exporters read it from the result metadata.
    pending = request.pending_base_config
    async with session.exports.route(targets, cache.layout) as session_id:
        message = solve_request(
            request,
            ref=ref,
            session_id=session_id,
            cache=cache,
            is_moby=session.conn.is_moby,
            image_config=None if pending is not None else request.image_config,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow_status)
            try:
                response = await _gateway_build(
                    session, stub, message, request, cache, served, target or _solve_target, pending
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
            locals=served.locals,
            uploads_before=uploads_before,
            log=log,
        )
    assert response is not None
    await cache.finish(response.exporter_response)
    exporter_response = dict(response.exporter_response)
    config = served.merged_config or request.image_config
    if config is not None:
        exporter_response.setdefault(RESPONSE_IMAGE_CONFIG_KEY, config.to_json().decode())
    elif served.image_config:
        exporter_response.setdefault(RESPONSE_IMAGE_CONFIG_KEY, served.image_config.decode())
    dropped = log.enrich(served.error) if served.error is not None else None
    return dataclasses.replace(
        SolveResult.of(request, ref, exporter_response),
        container=served.container,
        mounts=MappingProxyType(served.mounts),
        debug=served.debug,
        error=dropped if isinstance(dropped, SolveError) else None,
    )


@dataclass(slots=True)
class _Served:
    """What the client half of a build learnt: the locals it served, the result's image
    config, the State's config merged onto its base image's; a container request's
    process and kept mounts; an error ``OnError`` dropped and what its commands gave."""

    locals: list[str] = field(default_factory=list)
    image_config: bytes = b""
    merged_config: llb.ImageConfig | None = None
    container: ProcessResult | None = None
    mounts: dict[str, llb.State] = field(default_factory=dict)
    debug: tuple[ProcessResult, ...] = ()
    error: SolveError | None = None


class FrontendBridge:
    """Runs the frontends of a request's graph in the request's own build (a
    :class:`~llblib_async.llb.FrontendRunner`), serving the directories they read."""

    def __init__(self, bridge: Bridge, session: SessionServices, cache: CachePlan, served: _Served):
        self.bridge = bridge
        self.session_id = session.session_id
        self._bridge = bridge
        self._session = session
        self._cache = cache
        self._served = served

    def serve(self, locals: Mapping[str, Path]) -> None:
        for name, path in locals.items():
            self._session.filesync.serve(name, path)
            if name not in self._served.locals:
                self._served.locals.append(name)

    async def solve(self, request: FrontendRequest, *, evaluate: bool = False) -> gw.Result:
        self.serve(request.locals)
        return await self._bridge.solve_frontend(
            request.frontend,
            opts=request.opts,
            inputs=request.inputs,
            evaluate=evaluate,
            cache_imports=self._cache.imports,
        )

    async def run_frontend(self, request: FrontendRequest) -> FrontendResult:
        result = await self.solve(request)
        refs = {k: v for k, v in result.refs.refs.items()} if result.refs is not None else {}
        for key, ref in [("", result.ref), *refs.items()]:
            if ref is not None and ref.id and ref.def_ is None:
                raise ConnectionLostError(
                    self._bridge.address,
                    f"the daemon returned frontend result {key or 'ref'} without its graph",
                )
        return FrontendResult(
            definition=result.ref.def_ if result.ref is not None else None,
            refs=MappingProxyType({k: v.def_ for k, v in refs.items() if v.def_ is not None}),
            metadata=MappingProxyType(dict(result.metadata)),
        )


def current_frontend_bridge() -> FrontendBridge | None:
    """The :class:`FrontendBridge` of the build whose client half is running here, if any."""
    runner = current_frontend_runner()
    return runner if isinstance(runner, FrontendBridge) else None


async def _in_empty_build(
    request: Request, session: SessionServices, work: Callable[[FrontendBridge], Awaitable[T]]
) -> T:
    """Run ``work`` on the client side of a build of ``request`` in ``session`` that
    solves nothing, so the frontends it marshals run in that build."""
    done: list[T] = []

    async def only_work(runner: FrontendBridge, request: Request, cache: CachePlan) -> gw.Result:
        done.append(await work(runner))
        return gw.Result()

    await run_request(request, session, target=only_work)
    return done[0]


async def resolve_state(
    state: llb.State, session: SessionServices, *, platform: llb.Platform | str | None = None
) -> llb.State:
    """Run the frontends (and other lazy States) of ``state``'s graph in a build of
    ``session`` that solves nothing else, and return the State ``state`` stands for."""

    async def resolve(runner: FrontendBridge) -> llb.State:
        definition = await llb.marshal_async(state, platform=platform)
        runner.serve(definition.locals)
        return await llb.resolve_lazy(state, platform=platform)

    return await _in_empty_build(Request.of(state, label="resolve"), session, resolve)


async def marshal_states(
    states: Sequence[llb.State], session: SessionServices, *, platform: llb.Platform | str | None = None
) -> list[llb.Definition]:
    """The Definitions ``session.do`` would send for ``states``: marshaled, one after the
    other, in one build of ``session`` that solves nothing (their frontends run in it)."""

    async def marshal_all(runner: FrontendBridge) -> list[llb.Definition]:
        return [await llb.marshal_async(state, platform=platform) for state in states]

    # Not in the daemon's build history: it built nothing.
    request = Request.of(llb.scratch(), label="to_yaml", record_history=False)
    return await _in_empty_build(request, session, marshal_all)


async def _solve_target(runner: FrontendBridge, request: Request, cache: CachePlan) -> gw.Result:
    """The request's result: its frontend's, or its definition's, in the current build."""
    spec = frontend_spec(request.state) if request.state is not None else None
    if spec is not None:
        return await runner.solve(await spec.request(), evaluate=True)
    definition = await request.marshal()
    runner.serve(definition.locals)
    # OnError needs the failure here, in the build, not at the first read of the result.
    evaluate = request.evaluate or request.on_error is not None
    return await runner._bridge.solve(definition.to_pb(), evaluate=evaluate, cache_imports=cache.imports)


def _base_resolution(session: SessionServices) -> contextlib.AbstractContextManager[object]:
    """Frontend inputs on ``llb.image`` resolve their base's config with the session's resolver."""
    if session.image_resolver is None:
        return contextlib.nullcontext()
    return using_base_resolver(session.image_resolver)


async def _merge_base(config: llb.ImageConfig, session: SessionServices) -> llb.ImageConfig:
    """``config`` merged onto its pending base's config, resolved with the session's resolver."""
    if session.image_resolver is None:
        assert config.base is not None
        raise BaseImageError(config.base.ref, "this session has no image resolver")
    return await llb.resolve_base_config(config, session.image_resolver)


async def _gateway_build(
    session: SessionServices,
    stub: control.ControlStub,
    message: control.SolveRequest,
    request: Request,
    cache: CachePlan,
    served: _Served,
    target: SolveTarget,
    pending: llb.ImageConfig | None,
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
            runner = FrontendBridge(bridge, session, cache, served)
            with (
                marshal_scope(session.session_id),
                using_frontend_runner(runner),
                _base_resolution(session),
            ):
                if request.container is not None:
                    definition = await request.marshal()
                    runner.serve(definition.locals)
                    served.container, served.mounts = await bridge.run_container(
                        definition.to_pb(), request.container
                    )
                    await bridge.return_result(gw.Result())
                    return
                solved = await _solve_or_debug(target, runner, request, cache, served)
                if solved is not None and pending is not None:
                    # In this build: the session's GatewayResolver asks through its bridge.
                    served.merged_config = await _merge_base(pending, session)
            if solved is None:  # failed, debugged, error dropped
                await bridge.return_result(gw.Result())
                return
            pb_result = solved
            served.image_config = pb_result.metadata.get(EXPORTER_IMAGE_CONFIG_KEY, b"")
            result = bridge.result(pb_result)
            for handler in request.result_handlers:
                await handler(result)
            put_image_config(pb_result, request.exports, message.exporters, resolved=served.merged_config)
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


async def _solve_or_debug(
    target: SolveTarget, runner: FrontendBridge, request: Request, cache: CachePlan, served: _Served
) -> gw.Result | None:
    """Solve ``target``; a failure goes through ``request.on_error`` first.

    The failed exec is read from the error alone (its ``errdefs.Solve`` detail), so it
    does not matter what made it: the request's graph, however deep, or a frontend
    (a Dockerfile ``RUN``). ``None`` means the build failed and ``OnError.drop_error``
    dropped the error (kept on ``served``).
    """
    on_error = request.on_error
    try:
        return await target(runner, request, cache)
    except SolveError as err:
        spec = failed_step(err) if on_error is not None else None
        if on_error is None or spec is None:
            raise
        try:
            err.debug = await debug_failed_step(
                runner.bridge.container, spec, on_error, runner.bridge.prepare_container
            )
        except BuildKitError as debug_err:
            err.add_note(f"on_error could not debug the failed step: {debug_err}")
            raise err from err.__cause__
        if not on_error.drop_error:
            raise
        served.error, served.debug = err, err.debug
        return None

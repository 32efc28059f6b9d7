"""A BuildKit session shared by many build requests (llblib's ``Session``).

One :class:`Session` is one BuildKit session on the daemon (``Control.Session``, or
Docker's ``/session`` hijack on a Docker daemon) serving, for every request made
through it:

* ``FileSync`` for the local directories of every request (a request's locals are
  added when it starts, so requests made after the session opened may use new ones),
* ``FileSend`` and the content store for the exporters that send their output back,
* the solver's other attachables (secrets, SSH/socket forwards, auth...).

Each :meth:`Session.do` runs the request pipeline (:mod:`llblib_async._pipeline`): a
*client-side gateway build* whose result handlers may read files of the result before
the exporters run. Any number of ``do`` calls run concurrently, downloads included:
the daemon addresses a download (``LocalExport``, ``TarExport``, tarballs, OCI
layouts) only by session and exporter index, so while one request downloads through
the session, another that downloads gets a short-lived private session serving the
same locals and attachables (:attr:`Session.export_sessions` counts them; see
:mod:`llblib_async._pipeline.exports`).

Open one with ``Solver.session(client)``; ``client.solve`` opens a one-request session
with :func:`open_session`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import anyio

from . import llb
from ._fsutil.send import SendStats
from ._fsutil.walk import FilterOptions
from ._identity import new_id
from ._pipeline.exports import ExportRoute
from ._pipeline.run import SessionServices, marshal_states, resolve_state, run_request
from ._tunnel.handle import SessionHandle
from ._tunnel.transports import open_client_session
from ._wire.connection import Connection
from .attachables.attachable import Attachable
from .attachables.content_store import ContentStore
from .attachables.filesend import FileSendProvider
from .attachables.filesync import FileSyncProvider
from .errors import SessionClosedError
from .gateway_resolver import GatewayResolver
from .progress import NullProgress, ProgressSink
from .request import Request, SolveResult

__all__ = ["Session", "open_session"]

T = TypeVar("T")


class Session:
    """Runs build requests over one BuildKit session; open it with ``Solver.session``."""

    def __init__(
        self,
        handle: SessionHandle,
        services: SessionServices,
        *,
        image_resolver: llb.CachingResolver | None = None,
    ) -> None:
        self._handle = handle
        self._services = services
        self._running: dict[anyio.CancelScope, anyio.Event] = {}
        self._closing = False
        self._image_resolver = image_resolver

    @property
    def id(self) -> str:
        """The BuildKit session id (``SolveRequest.session``)."""
        return self._handle.id

    @property
    def locals(self) -> Mapping[str, Path]:
        """Every local directory the session serves so far, by name."""
        return MappingProxyType(dict(self._services.filesync.dirs))

    @property
    def transport(self) -> str:
        """What carries the session: ``"docker-hijack"`` (Docker's ``/session``) or
        ``"control-session"`` (``Control.Session`` on the gRPC connection)."""
        return self._handle.transport

    @property
    def uploads(self) -> tuple[SendStats, ...]:
        """One entry per local-directory transfer so far (name, entries listed, files
        the daemon asked for, bytes sent): shows what was (not) sent again."""
        return tuple(self._services.filesync.transfers)

    @property
    def export_sessions(self) -> int:
        """How many short-lived private sessions concurrent downloads needed so far
        (a request downloading while another one downloads gets one)."""
        return self._services.exports.private_sessions

    def add_local(self, name: str, path: Path) -> None:
        """Serve ``path`` as ``local://name`` (also done for each request's locals).

        Raises :class:`~llblib_async.errors.LocalDirError` if ``path`` is not a
        directory or ``name`` is already served from another directory.
        """
        self._services.filesync.serve(name, path)

    async def do(self, request: Request) -> SolveResult:
        """Build ``request``, run its result handlers and exporters; return the exporter response.

        Raises :class:`~llblib_async.errors.SolveError` when the build fails (with the
        failing step's log tail), the exception of a failing result handler unchanged,
        :class:`~llblib_async.errors.ConnectionLostError` when the daemon goes away,
        :class:`~llblib_async.errors.SessionClosedError` when the session is closed
        meanwhile. Cancelling the calling task cancels the build in the daemon; other
        requests and the session are not affected by either.
        """
        return await self._run(lambda: run_request(request, self._services))

    @property
    def image_resolver(self) -> llb.CachingResolver:
        """Resolves image configs through the daemon with this session's registry credentials.

        A :class:`~llblib_async.GatewayResolver` behind a
        :class:`~llblib_async.llb.CachingResolver`: one cache for the session, shared by
        all its requests, keeping only successes. Use it with
        ``llb.config_ops.resolve_image`` or call :meth:`image`. Requests use it too, to
        merge the config of a State built on ``llb.image(ref)`` onto the base image's
        config when they export it as an image (each base resolved once per session).
        """
        if self._image_resolver is None:
            self._image_resolver = llb.CachingResolver(GatewayResolver(self._services))
        return self._image_resolver

    async def image(
        self,
        ref: str,
        *,
        platform: llb.Platform | str | None = None,
        pin_digest: bool = True,
        **image_options: Any,
    ) -> llb.State:
        """``FROM ref``: the image as a State carrying its config (llblib's ``ResolvedImage``).

        The config is resolved through the daemon with the session's credentials
        (:attr:`image_resolver`, cached per session) and applied like a Dockerfile
        ``FROM``: the State runs with the image's env, working dir and user, and an
        image exported from it keeps the base's env, entrypoint, cmd and history
        (helpers of :mod:`llblib_async.llb.config_ops` add to them). With
        ``pin_digest`` (the default) the source is pinned to the digest that was
        resolved, so the build uses exactly the image whose config was read.

        Compare ``llb.image(ref)``: no registry is asked when the State is built, runs
        on it do not see the image's env, working dir or user, and only an image
        exported from it inherits the base's config (merged in by the request, through
        this session's :attr:`image_resolver`); ``llb.image(ref, inherit_config=False)``
        opts out of that too (the exported image then has only what the config helpers
        set). ``pin_digest=False`` keeps the tag floating. ``image_options`` go to
        :func:`llblib_async.llb.image`.
        """
        return await llb.config_ops.resolve_image(
            ref, self.image_resolver, platform=platform, pin_digest=pin_digest, **image_options
        )

    async def resolve(self, state: llb.State, *, platform: llb.Platform | str | None = None) -> llb.State:
        """The State a frontend (or other lazy) ``state`` stands for, solved in this session.

        Runs the frontend (``llb.dockerfile``, ``llb.frontend``) without building its
        result, and returns the State of its result with its image config applied,
        so config helpers and ops build on the image's config and env::

            app = (await session.resolve(llb.dockerfile(text, context="."))).apply(co.cmd("serve"))

        The result is memoised per session (and platform); it reads the session's local
        directories, so use it in this session only. Raises what the frontend raises
        (:class:`~llblib_async.errors.SolveError` pointing at the Dockerfile's lines).
        """
        return await self._run(lambda: resolve_state(state, self._services, platform=platform))

    async def to_yaml(
        self,
        *requests: Request,
        platform: llb.Platform | str | None = None,
        redact: Iterable[str] = (),
        redact_value: str = "<redacted>",
    ) -> str:
        """The graphs ``requests`` build, as one YAML sequence (llblib's ``Session.ToYAML``).

        One item per request, in order, as :func:`llb.to_yaml <llblib_async.llb.to_yaml>`
        renders it (anchors and aliases shared across the items): a request's State is
        marshaled in this session as :meth:`do` would (``platform`` is the default
        platform), so frontend States (``llb.dockerfile``, ``llb.frontend``) and other
        lazy States are resolved here, with the session's locals and credentials and
        its memo; a request made from a Definition shows that Definition.  A container
        request (``Solver.container``) builds nothing, so it shows as scratch, as in
        Go (its root is ``request.state``).  ``redact`` and ``redact_value`` are
        :func:`~llblib_async.llb.to_yaml`'s.

        When some request has a State this runs one build in the daemon that solves
        nothing (it is not kept in the build history); frontends run in it.  Raises
        what marshaling raises (:class:`~llblib_async.errors.SolveError` for a failing
        frontend) and ``TypeError`` for an argument that is not a
        :class:`~llblib_async.Request`.

        Deviations from Go llblib: it answers the YAML text (Go: a node to marshal)
        and takes the ``platform``/``redact`` options of ``llb.to_yaml``.
        """
        states: list[llb.State] = []
        for request in requests:
            if not isinstance(request, Request):
                raise TypeError(f"to_yaml() takes Requests (solver.build(state)), not {request!r}")
            if request.state is not None and request.container is None:
                states.append(request.state)
        marshaled = iter(
            await self._run(lambda: marshal_states(states, self._services, platform=platform))
            if states
            else ()
        )
        targets: list[llb.State | llb.Definition] = []
        for request in requests:
            if request.definition is not None:
                targets.append(request.definition)
            elif request.container is not None:
                targets.append(llb.scratch())
            else:
                targets.append(next(marshaled))
        return llb.to_yaml(*targets, redact=redact, redact_value=redact_value)

    async def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` like a request: guarded by the session, cancelled when it closes."""
        if self._closing:
            raise SessionClosedError("the session is closed")
        self._handle.raise_if_closed()
        scope = anyio.CancelScope()
        done = anyio.Event()
        self._running[scope] = done
        try:
            with scope:
                return await self._handle.guard(work)
        finally:
            del self._running[scope]
            done.set()
        # Only reached when _close cancelled the scope.
        raise SessionClosedError("the session was closed while the request ran")

    async def _close(self) -> None:
        """Cancel the requests still running and wait until they have ended."""
        self._closing = True
        pending = list(self._running.items())
        for scope, _ in pending:
            scope.cancel()
        with anyio.CancelScope(shield=True):
            for _, done in pending:
                await done.wait()


@contextlib.asynccontextmanager
async def open_session(
    conn: Connection,
    *,
    locals: Mapping[str, Path] | None = None,
    adjust: Callable[[str, FilterOptions], FilterOptions] | None = None,
    attachables: Sequence[Attachable] = (),
    progress: ProgressSink | None = None,
) -> AsyncIterator[Session]:
    """Open one BuildKit session on ``conn`` serving ``locals`` (``adjust`` may rewrite a
    local's filter options per transfer) and ``attachables``; progress of every request
    goes to ``progress``.

    Leaving the block cancels the requests still running (their ``do`` raises
    :class:`~llblib_async.errors.SessionClosedError`), waits for them, then closes the
    session. Raises :class:`~llblib_async.errors.DaemonUnreachableError` when the
    session cannot be opened and ``ValueError`` when two attachables serve one method.
    """
    filesync = FileSyncProvider(locals or {}, adjust=adjust)
    filesend = FileSendProvider({})
    # The daemon learns a session's methods when it opens, so the content store is
    # always served; requests add their local cache dirs (and OCI layout dirs) to it.
    content_store = ContentStore({})
    attachables = tuple(attachables)
    served: list[Attachable] = [filesync, filesend, content_store, *attachables]

    @contextlib.asynccontextmanager
    async def open_private(exports: Sequence[Attachable]) -> AsyncIterator[str]:
        # A request's own session for its downloads while another request downloads
        # through this one (see _pipeline/exports.py): everything this session serves,
        # with the request's own FileSend targets and content store.
        private = [filesync, *exports, *attachables]
        async with open_client_session(conn, session_id=new_id(), attachables=private) as h:
            yield h.id

    async with open_client_session(conn, session_id=new_id(), attachables=served) as handle:
        services = SessionServices(
            conn=conn,
            session_id=handle.id,
            filesync=filesync,
            content_store=content_store,
            exports=ExportRoute(handle.id, filesend, content_store, open_private),
            progress=progress if progress is not None else NullProgress(),
        )
        resolver = llb.CachingResolver(GatewayResolver(services))
        services = dataclasses.replace(services, image_resolver=resolver)
        session = Session(handle, services, image_resolver=resolver)
        try:
            yield session
        finally:
            await session._close()

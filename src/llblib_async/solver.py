"""The Solver: what the build requests of a program need from the client side.

A :class:`Solver` collects local directories and attachables (secrets, socket
forwards, auth...) and builds :class:`~llblib_async.Request` values; it knows
nothing of the daemon until :meth:`Solver.session` opens one BuildKit session that
serves all of it to any number of concurrent requests::

    solver = Solver()
    solver.add_attachable(secrets)
    req = solver.build(state, label="app", exports=[LocalExport("out")])
    async with llblib_async.connect() as client, solver.session(client) as session:
        await session.do(req)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Unpack

from . import llb
from ._fsutil.walk import FilterOptions, MapResult
from ._pb.fsutil.types import Stat
from .attachables.attachable import Attachable
from .attachables.filesync import add_dir
from .client import Client
from .errors import LateAttachableError, LocalDirError
from .gateway.options import ContainerOptions
from .progress import ProgressSink
from .request import Request, RequestOptions
from .session import Session, open_session

__all__ = ["Solver"]


class Solver:
    """Collects locals and attachables; opens sessions (:meth:`session`); builds requests."""

    def __init__(self) -> None:
        self._locals: dict[str, Path] = {}
        self._owners: dict[str, tuple[int, int]] = {}
        self._attachables: list[Attachable] = []
        self._sessions: set[Session] = set()
        self._opening = 0  # sessions opening or open

    @property
    def locals(self) -> Mapping[str, Path]:
        """Local directories known so far, by ``local://`` name."""
        return MappingProxyType(dict(self._locals))

    @property
    def attachables(self) -> tuple[Attachable, ...]:
        return tuple(self._attachables)

    def add_local(self, name: str, path: str | Path) -> None:
        """Register a local directory; open sessions start serving it at once.

        Raises :class:`~llblib_async.errors.LocalDirError` if ``path`` is not a
        directory or ``name`` is already used for another directory.
        """
        path = add_dir(self._locals, name, path)
        for session in self._sessions:
            session.add_local(name, path)

    def local(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        follow_paths: Iterable[str] = (),
        owner: tuple[int, int] = (0, 0),
        track_content: bool = True,
        **options: Any,
    ) -> llb.State:
        """A local directory source, registered now (Go llblib's ``Solver.Local``).

        Unlike a plain :func:`llb.local <llblib_async.llb.local>` (false there, for
        Go ``llb.Local``'s bytes), ``track_content`` defaults to true, as Go llblib's
        ``Solver.Local``: the source is derived from the directory's current
        content, so a session sends an unchanged directory once and a changed one
        again (only the changed files); pass ``track_content=False`` for the plain
        behaviour (a changed directory is not sent again within one session).
        ``owner`` is the ``(uid, gid)`` every file gets in the build (BuildKit's
        clients send 0:0). ``path`` may name a single file: the source then holds
        just that file. Other keyword arguments go to
        :func:`llb.local <llblib_async.llb.local>`. Raises
        :class:`~llblib_async.errors.LocalDirError` if ``path`` does not exist.
        """
        uid, gid = owner
        if not (0 <= uid < 2**32 and 0 <= gid < 2**32):
            raise ValueError(f"owner must be a (uid, gid) pair of 32-bit ids, not {owner!r}")
        host = Path(path).absolute()
        if host.is_file():
            # A single file: its directory is served, filtered down to that file (as in Go).
            if tuple(include) or tuple(exclude):
                raise ValueError(f"{host} is a file: include/exclude patterns apply to directories")
            host, include = host.parent, (host.name,)
        elif not host.is_dir():
            raise LocalDirError(name or str(path), str(host), "does not exist")
        state = llb.local(
            host,
            name=name,
            include=include,
            exclude=exclude,
            follow_paths=follow_paths,
            track_content=track_content,
            **options,
        )
        local_name = name if name is not None else llb.default_local_name(host)
        self.add_local(local_name, host)
        if owner != (0, 0):
            self._owners[local_name] = owner
        return state

    def _filters_for(self, name: str, opts: FilterOptions) -> FilterOptions:
        owner = self._owners.get(name)
        if owner is None:
            return opts
        uid, gid = owner
        inner = opts.map

        def set_owner(path: str, st: Stat) -> MapResult:
            st.uid, st.gid = uid, gid
            return inner(path, st) if inner is not None else MapResult.KEEP

        return dataclasses.replace(opts, map=set_owner)

    def add_attachable(self, attachable: Attachable) -> None:
        """Serve ``attachable`` (an object with grpclib ``__mapping__()``) in the sessions
        this solver opens.

        Raises :class:`~llblib_async.errors.LateAttachableError` (naming it) while a
        session of this solver is open: the daemon learns a session's methods when it
        opens, so an open session could never serve it. We raise rather than serve it
        in a second session because every request names one session for all of its
        services (secrets, SSH, auth, locals) and the requests already running or
        made with the open session would still not see it; a new ``solver.session``
        opened afterwards serves it. (Go llblib snapshots the solver when a session
        opens and silently ignores later additions.) Locals are different: FileSync
        is one method whatever the directory, so :meth:`add_local` and :meth:`local`
        are served by open sessions at once.
        """
        if not callable(getattr(attachable, "__mapping__", None)):
            raise TypeError(f"{attachable!r} is not an attachable (no __mapping__())")
        if self._opening:
            raise LateAttachableError(attachable)
        self._attachables.append(attachable)

    def build(self, target: llb.State | llb.Definition, **options: Unpack[RequestOptions]) -> Request:
        """A :class:`~llblib_async.Request` for ``target`` with ``options`` (see
        :class:`~llblib_async.RequestOptions`: ``label``, ``exports``, ``on_result``...).

        A Definition's locals are registered now; a State's when the request runs, as
        marshalling it may need the daemon.
        """
        if isinstance(target, llb.Definition):
            for name, path in target.locals.items():
                self.add_local(name, path)
        return Request.of(target, **options)

    def container(
        self,
        root: llb.State,
        args: str | Sequence[str] | None = None,
        *,
        label: str = "",
        entitlements: Iterable[str] = (),
        options: ContainerOptions | None = None,
        **container_options: Any,
    ) -> Request:
        """A request that runs a container on the build worker (Go llblib's ``Solver.Container``).

        The container's root filesystem is ``root`` (solved first) and its process
        ``args``; the other keywords are :class:`~llblib_async.ContainerOptions`
        (``env``, ``cwd``, ``user``, ``mounts``, ``network``, ``stdin``, ``stdout``,
        ``terminal``, ``setup``, ``teardown``, ``check``...), or pass ``options=``.
        ``session.do(request)`` runs it and answers a
        :class:`~llblib_async.SolveResult` whose ``container`` is the process's
        :class:`~llblib_async.ProcessResult`; a non-zero exit raises
        :class:`~llblib_async.ContainerExitError` unless ``check=False``.
        ``entitlements`` (e.g. ``security.insecure``) are the request's.

        Deviations from Go: the request exports nothing (as in Go) and says so by
        taking no ``exports``; the command defaults to ``root``'s ``with_args``, else
        ``/bin/sh``; options are applied once.
        """
        if options is None:
            options = ContainerOptions(args=args, **container_options)
        elif args is not None or container_options:
            raise TypeError("pass either options= or container keywords, not both")
        return Request(state=root, container=options, label=label, entitlements=tuple(entitlements))

    @contextlib.asynccontextmanager
    async def session(
        self, client: Client, *, progress: ProgressSink | None = None
    ) -> AsyncIterator[Session]:
        """Open one BuildKit session serving this solver's locals and attachables.

        Leaving the block cancels the requests still running (their ``do`` raises
        :class:`~llblib_async.SessionClosedError`), waits for them, then closes the
        session. A failure to close is raised as the one typed error the session
        machinery reports (e.g. :class:`~llblib_async.errors.ConnectionLostError`).
        """
        opened = open_session(
            client.connection,
            locals=self._locals,
            adjust=self._filters_for,
            attachables=tuple(self._attachables),
            progress=progress,
        )
        self._opening += 1  # add_attachable refuses from now on, not only once it is open
        try:
            async with opened as session:
                self._sessions.add(session)
                try:
                    yield session
                finally:
                    self._sessions.discard(session)
        finally:
            self._opening -= 1

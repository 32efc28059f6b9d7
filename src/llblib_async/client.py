"""The connection to a BuildKit daemon: :func:`connect` and :class:`Client`.

``async with connect() as client:`` opens one gRPC connection (unix socket, TCP
with TLS, or the Docker daemon's embedded BuildKit) and closes it on exit. The
client makes the calls that need no session (info, workers, disk usage, prune) and
``client.solve``, a build in a session of its own; for many builds over one session
use a :class:`~llblib_async.Solver`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar, Unpack

from grpclib.const import Status

from . import llb
from ._pb.moby.buildkit import v1 as control
from ._wire.connection import Connection, open_connection
from ._wire.grpc_errors import translating_errors
from ._wire.tls import TLSConfig
from .attachables.attachable import Attachable
from .daemon_info import BuildkitInfo, UsageRecord, Worker
from .errors import DaemonError
from .progress import ProgressSink
from .request import Request, RequestOptions, SolveResult
from .session import open_session

T = TypeVar("T")

__all__ = ["Client", "TLSConfig", "connect"]


class Client:
    """A connected BuildKit daemon.  Create it with :func:`connect`."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._control = control.ControlStub(connection.channel)

    @property
    def address(self) -> str:
        """The address actually used (after resolving defaults)."""
        return self._conn.address

    @property
    def is_moby(self) -> bool:
        """True when this is the BuildKit embedded in a Docker daemon."""
        return self._conn.is_moby

    @property
    def connection(self) -> Connection:
        return self._conn

    @property
    def control(self) -> control.ControlStub:
        """The raw ``moby.buildkit.v1.Control`` stub, for calls this API does not cover yet."""
        return self._control

    async def call(self, method: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one RPC, turning gRPC and connection failures into llblib-async errors."""
        with translating_errors(method, self.address):
            return await fn()

    async def info(self) -> BuildkitInfo:
        """The daemon's BuildKit version.

        Docker daemons that predate the Info call (e.g. Docker 20.10) report an
        empty version and ``package="moby"``.
        """
        try:
            resp = await self.call("Info", lambda: self._control.info(control.InfoRequest()))
        except DaemonError as err:
            if err.status == Status.UNIMPLEMENTED.name and self.is_moby:
                return BuildkitInfo(version="", package="moby")
            raise
        return BuildkitInfo.from_pb(resp.buildkit_version)

    async def list_workers(self, *filters: str) -> list[Worker]:
        """The daemon's workers, optionally filtered (containerd filter syntax)."""
        resp = await self.call(
            "ListWorkers",
            lambda: self._control.list_workers(control.ListWorkersRequest(filter=list(filters))),
        )
        return [Worker.from_pb(w) for w in resp.record]

    async def disk_usage(self, *filters: str) -> list[UsageRecord]:
        """Build-cache records (``buildctl du``)."""
        resp = await self.call(
            "DiskUsage", lambda: self._control.disk_usage(control.DiskUsageRequest(filter=list(filters)))
        )
        return [UsageRecord.from_pb(r) for r in resp.record]

    async def prune(
        self,
        *,
        all: bool = False,
        keep_duration_s: float = 0,
        filters: Sequence[str] = (),
        max_used_space: int = 0,
    ) -> list[UsageRecord]:
        """Delete build cache; returns the records that were deleted.

        ``all`` also removes internal and frontend records, like ``buildctl prune --all``.
        """
        req = control.PruneRequest(
            filter=list(filters),
            all=all,
            keep_duration=int(keep_duration_s * 1e9),
            max_used_space=max_used_space,
        )

        async def run() -> list[UsageRecord]:
            return [UsageRecord.from_pb(r) async for r in self._control.prune(req)]

        return await self.call("Prune", run)

    async def solve(
        self,
        target: llb.State | llb.Definition,
        *,
        progress: ProgressSink | None = None,
        attachables: Sequence[Attachable] = (),
        **options: Unpack[RequestOptions],
    ) -> SolveResult:
        """Build ``target`` in a session of its own and run its exporters.

        A one-request session: the same as ``Solver.session`` + ``session.do`` of
        ``Solver.build(target, **options)`` (see :class:`~llblib_async.RequestOptions`
        for ``exports``, ``label``, ``on_result``, ``entitlements``, ``cache_exports``,
        ``cache_imports``...). ``attachables`` are served in the session besides the
        local directories and export targets (secrets, SSH agents...).

        Image exporters without an explicit ``image_config`` get the State's image
        config. Raises :class:`~llblib_async.errors.SolveError` when the build fails
        (with the failing step's name and log tail),
        :class:`~llblib_async.errors.ConnectionLostError` when the daemon goes away
        mid-build, :class:`~llblib_async.errors.UnsupportedExporterError` for an
        exporter the daemon lacks (a classic Docker daemon has only ``moby``,
        ``local``, ``tar``). Cancelling the call cancels the build in the daemon.
        """
        request = Request.of(target, **options)
        async with open_session(self._conn, attachables=attachables, progress=progress) as session:
            return await session.do(request)

    async def aclose(self) -> None:
        await self._conn.close()


@asynccontextmanager
async def connect(
    address: str | None = None,
    *,
    tls: TLSConfig | None = None,
    timeout: float = 10.0,
) -> AsyncIterator[Client]:
    """Connect to a BuildKit daemon.

    ``address`` is ``unix:///path``, ``tcp://host:port`` (with ``tls`` for TLS),
    ``docker://`` (the Docker daemon at ``$DOCKER_HOST`` or its default socket) or
    ``docker+unix:///path``.  With no address: ``$BUILDKIT_HOST``, then the default
    buildkitd socket, then the Docker daemon.  An unreachable or malformed address
    raises :class:`~llblib_async.errors.DaemonUnreachableError` /
    :class:`~llblib_async.errors.AddressError` within ``timeout`` seconds.
    """
    conn = await open_connection(address, tls=tls, timeout=timeout)
    client = Client(conn)
    try:
        yield client
    finally:
        await client.aclose()

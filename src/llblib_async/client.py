"""The connection to a BuildKit daemon and the calls that need no session.

``async with connect() as client:`` opens one gRPC connection (unix socket, TCP
with TLS, or the Docker daemon's embedded BuildKit) and closes it on exit.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from grpclib.const import Status

from ._errors_grpc import translating_errors
from ._pb.moby.buildkit import v1 as control
from ._transport import Connection, TLSConfig, open_connection
from .errors import DaemonError
from .types import BuildkitInfo, UsageRecord, Worker

if TYPE_CHECKING:
    from . import llb
    from ._session import Attachable
    from .exporters import CacheExport, CacheImport, Export
    from .progress import ProgressSink
    from .solve import SolveResult

T = TypeVar("T")

__all__ = ["Client", "TLSConfig", "connect", "new_id"]


def new_id() -> str:
    """A unique id for builds and sessions (BuildKit's ``identity.NewID`` shape: 25 base36 chars)."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    n = secrets.randbits(128)
    out = []
    for _ in range(25):
        n, r = divmod(n, 36)
        out.append(alphabet[r])
    return "".join(out)


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
        return BuildkitInfo._from_pb(resp.buildkit_version)

    async def list_workers(self, *filters: str) -> list[Worker]:
        """The daemon's workers, optionally filtered (containerd filter syntax)."""
        resp = await self.call(
            "ListWorkers",
            lambda: self._control.list_workers(control.ListWorkersRequest(filter=list(filters))),
        )
        return [Worker._from_pb(w) for w in resp.record]

    async def disk_usage(self, *filters: str) -> list[UsageRecord]:
        """Build-cache records (``buildctl du``)."""
        resp = await self.call(
            "DiskUsage", lambda: self._control.disk_usage(control.DiskUsageRequest(filter=list(filters)))
        )
        return [UsageRecord._from_pb(r) for r in resp.record]

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
            return [UsageRecord._from_pb(r) async for r in self._control.prune(req)]

        return await self.call("Prune", run)

    async def solve(
        self,
        target: llb.State | llb.Definition,
        *,
        exports: Sequence[Export] = (),
        progress: ProgressSink | None = None,
        label: str = "",
        attachables: Sequence[Attachable] = (),
        entitlements: Sequence[str] = (),
        cache_exports: Sequence[CacheExport] = (),
        cache_imports: Sequence[CacheImport] = (),
    ) -> SolveResult:
        """Build ``target`` in a session of its own and run ``exports``.

        See :func:`llblib_async.solve.solve`.
        """
        from .solve import solve

        return await solve(
            self,
            target,
            exports=exports,
            progress=progress,
            label=label,
            attachables=attachables,
            entitlements=entitlements,
            cache_exports=cache_exports,
            cache_imports=cache_imports,
        )

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

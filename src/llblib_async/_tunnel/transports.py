"""What carries a session: ``Control.Session`` on the gRPC connection, or Docker's ``/session`` socket.

``control-session``
    ``Control.Session`` on the client's gRPC channel: the session's own HTTP/2
    connection travels inside the ``BytesMessage`` chunks of that bidi call
    (:class:`~llblib_async._wire.pipes.GrpcStreamPipe`); what plain buildkitd offers
    (:func:`open_control_session`).
``docker-hijack``
    ``POST /session`` with ``Upgrade: h2c`` and the session as HTTP headers
    (``X-Docker-Expose-Session-Uuid``, ``-Name``, ``-Sharedkey``, one
    ``X-Docker-Expose-Session-Grpc-Method`` per served method); after the ``101`` dockerd
    speaks HTTP/2 + gRPC as the *client* on the raw socket and we serve it directly
    (buildkit ``session.Manager.HandleHTTPRequest``, mounted by moby's session router;
    what the Go client's ``WithSessionDialer`` and the docker CLI use). One socket per
    session, no second layer of framing, and the session's bytes do not share the HTTP/2
    flow-control windows of the ``/grpc`` connection with the build's own calls
    (:func:`open_docker_session`).

:func:`open_client_session` picks one: ``docker-hijack`` when the connection is to a
Docker daemon (:attr:`Connection.docker_socket <llblib_async._wire.connection.Connection>`
set), ``control-session`` otherwise. The choice is recorded on the handle
(:attr:`SessionHandle.transport <.handle.SessionHandle>`, shown by
:attr:`Session.transport <llblib_async.Session>`).

**When dockerd refuses ``/session``** -- it *answers* the ``POST`` with an HTTP error
status instead of ``101`` (an API proxy filtering endpoints, a daemon whose API lacks the
route) -- :func:`open_client_session` falls back to ``control-session`` and logs a
warning. Reason: the in-band session needs nothing but the ``/grpc`` endpoint, which the
connection already proved to work (the connect-time ``ListWorkers`` probe), and it gives
the build the same services; refusing to build where a working transport exists would help
nobody. When the socket cannot be reached at all, closes without an HTTP answer or does
not answer in time, there is no fallback: the daemon is gone or broken, the in-band call
would fail the same way, only later and less clearly, so
:class:`~llblib_async.errors.DaemonUnreachableError` naming the Docker socket address
(``docker+unix:///...``) is raised at once. :func:`open_docker_session` itself never
falls back: a refusal raises :class:`~llblib_async.errors.UpgradeRefusedError` (a
``DaemonUnreachableError`` carrying the HTTP status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpclib.const
from grpclib.client import Channel
from grpclib.exceptions import ProtocolError, StreamTerminatedError

from .._wire.address import Address
from .._wire.connection import Connection
from .._wire.docker_http import docker_hijack
from .._wire.messages import BytesMessage
from .._wire.pipes import GrpcStreamPipe
from ..attachables.attachable import Attachable
from ..errors import DaemonUnreachableError, UpgradeRefusedError
from .grpc_server import method_names
from .handle import SessionHandle
from .headers import canonical_headers, session_headers
from .health import HealthService
from .server import serve_session, serve_session_streams

__all__ = [
    "SESSION_METHOD",
    "SESSION_PATH",
    "TRANSPORT_CONTROL_SESSION",
    "TRANSPORT_DOCKER_HIJACK",
    "open_client_session",
    "open_control_session",
    "open_docker_session",
]

log = logging.getLogger("llblib_async.session")

SESSION_METHOD: Final = "/moby.buildkit.v1.Control/Session"
SESSION_PATH: Final = "/session"
TRANSPORT_DOCKER_HIJACK: Final = "docker-hijack"
TRANSPORT_CONTROL_SESSION: Final = "control-session"
DEFAULT_HIJACK_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class _Announcement:
    """Who the session is (the daemon's ``x-docker-expose-session-*`` headers, but the methods)."""

    session_id: str
    name: str
    shared_key: str
    health_check_ms: int | None

    def headers(self, attachables: Sequence[Attachable]) -> list[tuple[str, str]]:
        """The headers that open the session: who it is and every method it serves."""
        return session_headers(
            self.session_id,
            methods=method_names(attachables, HealthService()),
            shared_key=self.shared_key,
            name=self.name,
            health_check_ms=self.health_check_ms,
        )


@contextlib.asynccontextmanager
async def open_control_session(
    channel: Channel,
    *,
    session_id: str,
    shared_key: str = "",
    name: str = "llblib-async",
    attachables: Sequence[Attachable] = (),
    address: str = "buildkitd",
    health_check_ms: int | None = None,
    **tuning: Any,
) -> AsyncIterator[SessionHandle]:
    """Open ``Control.Session`` on ``channel`` and serve ``attachables`` inside it.

    ``session_id`` is what ``SolveRequest.session`` and ``local.session`` refer to;
    ``shared_key`` scopes the daemon's reuse of previously transferred local dirs.
    ``address`` only labels errors; ``health_check_ms``: see
    :func:`~.headers.session_headers`. ``tuning`` (``high_water``, ``low_water``,
    ``max_chunk``, ``close_timeout``) goes to :func:`~.server.serve_session`. Raises
    :class:`~llblib_async.errors.DaemonUnreachableError` if the call can't be made.
    """
    metadata = _Announcement(session_id, name, shared_key, health_check_ms).headers(attachables)
    async with channel.request(
        SESSION_METHOD,
        grpclib.const.Cardinality.STREAM_STREAM,
        BytesMessage,
        BytesMessage,
        metadata=metadata,
    ) as stream:
        try:
            await stream.send_request()
        except (OSError, StreamTerminatedError, ProtocolError) as e:
            raise DaemonUnreachableError(address, str(e) or type(e).__name__) from e
        async with serve_session(
            GrpcStreamPipe(stream), attachables, session_id=session_id, label=address, **tuning
        ) as handle:
            handle.transport = TRANSPORT_CONTROL_SESSION
            yield handle


async def _hijack_session(
    docker_socket: str, attachables: Sequence[Attachable], announcement: _Announcement, timeout: float
) -> socket.socket:
    """``POST /session`` upgraded to h2c; :class:`UpgradeRefusedError` on an HTTP error answer."""
    headers = canonical_headers(announcement.headers(attachables))
    return await docker_hijack(docker_socket, SESSION_PATH, headers, timeout=timeout)


@contextlib.asynccontextmanager
async def _serve_socket(
    sock: socket.socket,
    attachables: Sequence[Attachable],
    *,
    session_id: str,
    label: str,
    **tuning: Any,
) -> AsyncIterator[SessionHandle]:
    """Serve the session on a hijacked socket (dockerd is the HTTP/2 client); closes the socket."""
    try:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        async with serve_session_streams(
            reader, writer, attachables, session_id=session_id, label=label, **tuning
        ) as handle:
            handle.transport = TRANSPORT_DOCKER_HIJACK
            yield handle
    finally:
        # serve_session closed it already (after a clean half-close); this only covers a
        # failure before it started, and is a no-op otherwise.
        writer.close()


@contextlib.asynccontextmanager
async def open_docker_session(
    docker_socket: str,
    *,
    session_id: str,
    attachables: Sequence[Attachable] = (),
    address: str | None = None,
    name: str = "llblib-async",
    shared_key: str = "",
    health_check_ms: int | None = None,
    timeout: float = DEFAULT_HIJACK_TIMEOUT,
    **tuning: Any,
) -> AsyncIterator[SessionHandle]:
    """Open a session through Docker's ``/session`` hijack and serve ``attachables`` on it.

    ``docker_socket`` is the Docker API socket path (:attr:`Connection.docker_socket`);
    ``session_id``/``shared_key``/``name``/``health_check_ms`` as for
    :func:`open_control_session`; ``address`` labels errors (default: the socket as
    ``docker+unix:///...``); ``timeout`` bounds the upgrade; ``tuning`` goes to
    :func:`~.server.serve_session`. Yields the running :class:`~.handle.SessionHandle`
    (``transport == "docker-hijack"``); leaving the block shuts the session down and
    closes the socket.

    Raises :class:`~llblib_async.errors.UpgradeRefusedError` when dockerd answers the
    ``POST`` with an HTTP error, :class:`~llblib_async.errors.DaemonUnreachableError`
    when the socket cannot be reached or does not answer within ``timeout`` (both name
    the Docker socket), and ``ValueError`` when two attachables serve the same method.
    """
    announcement = _Announcement(session_id, name, shared_key, health_check_ms)
    sock = await _hijack_session(docker_socket, attachables, announcement, timeout)
    label = address if address is not None else str(Address("docker", path=docker_socket))
    async with _serve_socket(sock, attachables, session_id=session_id, label=label, **tuning) as handle:
        yield handle


@contextlib.asynccontextmanager
async def open_client_session(
    conn: Connection,
    *,
    session_id: str,
    attachables: Sequence[Attachable] = (),
    name: str = "llblib-async",
    shared_key: str = "",
    health_check_ms: int | None = None,
    timeout: float = DEFAULT_HIJACK_TIMEOUT,
    **tuning: Any,
) -> AsyncIterator[SessionHandle]:
    """Open the session a request on ``conn`` needs, on the best transport the daemon has.

    Docker daemon (``conn.docker_socket`` set): the ``/session`` hijack
    (:func:`open_docker_session`), falling back to ``Control.Session`` if dockerd refuses
    ``/session`` with an HTTP error (see the module docstring); anything else:
    ``Control.Session`` on the connection's channel. ``handle.transport`` says which.
    The other arguments are those of :func:`open_docker_session`.

    Raises :class:`~llblib_async.errors.DaemonUnreachableError` (naming the address) when
    the session cannot be opened.
    """
    if conn.docker_socket is not None:
        try:
            announcement = _Announcement(session_id, name, shared_key, health_check_ms)
            sock = await _hijack_session(conn.docker_socket, attachables, announcement, timeout)
        except UpgradeRefusedError as e:
            log.warning("%s; using Control.Session over /grpc instead", e)
        else:
            async with _serve_socket(
                sock, attachables, session_id=session_id, label=conn.address, **tuning
            ) as handle:
                yield handle
            return
    async with open_control_session(
        conn.channel,
        session_id=session_id,
        shared_key=shared_key,
        name=name,
        attachables=attachables,
        address=conn.address,
        health_check_ms=health_check_ms,
        **tuning,
    ) as handle:
        yield handle

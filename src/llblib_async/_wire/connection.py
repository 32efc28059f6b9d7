"""The gRPC connection to a BuildKit daemon: :func:`open_connection` and :class:`Connection`.

:func:`open_connection` resolves the address (:mod:`.address`), dials it
(:mod:`.dial`; for Docker after ``GET /_ping`` proved it is a Docker API socket) and
probes it with ``Control.ListWorkers`` before returning, so a wrong or dead address
fails here with :class:`~llblib_async.errors.DaemonUnreachableError` within ``timeout``
seconds instead of on the first real call. With no address it tries every default
candidate in order and reports all of them when none answers.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import h2.exceptions
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.protocol import H2Protocol

from .._pb.moby.buildkit import v1 as control
from ..errors import AddressError, DaemonUnreachableError
from .address import Address, default_candidates, parse_address, resolve_docker
from .dial import DialChannel, ProtocolFactory, close_quietly, instrumented, make_dialer
from .dial_failure import ConnectFailed, describe_os_error
from .docker_http import docker_ping, unix_socket
from .tls import TLSConfig

__all__ = ["Connection", "open_connection"]


@dataclass(eq=False)
class Connection:
    """An open, probed gRPC connection to a BuildKit daemon.

    ``channel`` is ready for the generated stubs (``ControlStub(conn.channel)``) and decodes
    error details (:mod:`llblib_async._wire.grpc_errors`).  ``address`` is the address actually
    used, in canonical form (``docker://`` resolved to ``docker+unix:///...``); ``tried``
    lists every candidate address considered, in order, ending with ``address``.
    ``is_moby`` is true for the BuildKit embedded in dockerd (address kind ``docker``, or a
    worker with id ``moby``); ``docker_api_version`` is the Docker API version (``"1.41"``)
    and ``docker_socket`` the Docker socket path for Docker connections, else ``None``.
    ``workers`` holds the ``WorkerRecord``s of the connect-time ``ListWorkers`` probe.

    If the connection drops, calls in flight fail (``StreamTerminatedError``, see
    :func:`~llblib_async._wire.grpc_errors.translate_grpc_error`) and grpclib re-dials the same
    address on the next call (for Docker: a fresh ``/grpc`` upgrade), each dial bounded by
    the ``timeout`` given to :func:`open_connection`.
    """

    channel: Channel
    address: str
    is_moby: bool
    tried: list[str] = field(default_factory=list)
    docker_api_version: str | None = None
    docker_socket: str | None = None
    workers: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        """Close the connection; in-flight calls fail with a stream/connection error."""
        self.channel.close()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def open_connection(
    address: str | Address | None = None,
    *,
    tls: TLSConfig | None = None,
    timeout: float = 10.0,
) -> Connection:
    """Connect to a BuildKit daemon and check that it answers ``Control.ListWorkers``.

    ``address``: see the module docstring; ``None`` resolves ``$BUILDKIT_HOST``, then the
    default buildkitd socket(s), then the Docker daemon.  ``tls`` is only valid with a
    ``tcp://`` address.  ``timeout`` bounds the whole call, every candidate included.

    Raises :class:`AddressError` for a malformed address (also from ``$BUILDKIT_HOST``), and
    :class:`DaemonUnreachableError` (``address``, ``reason``, ``tried``) when no candidate
    answered as a BuildKit daemon in time.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    candidates: list[tuple[Address, str | None]]
    if address is None:
        candidates = default_candidates(tls)
    else:
        addr = address if isinstance(address, Address) else parse_address(address)
        if tls is not None and addr.scheme != "tcp":
            raise AddressError(str(address), "TLS settings need a tcp:// address")
        candidates = [(resolve_docker(addr, str(address)), None)]

    tried: list[str] = []
    reasons: list[str] = []
    for cand, skipped in candidates:
        tried.append(str(cand))
        if skipped is not None:
            reasons.append(skipped)
            continue
        try:
            conn = await _connect(cand, tls, budget=timeout, deadline=deadline)
        except ConnectFailed as e:
            reasons.append(e.reason)
            continue
        conn.tried = tried
        return conn

    if len(tried) == 1:
        reason = reasons[0]
    else:
        reason = "no BuildKit daemon found (set BUILDKIT_HOST or pass an address): " + "; ".join(
            f"{a}: {r}" for a, r in zip(tried, reasons, strict=True)
        )
    raise DaemonUnreachableError(tried[-1], reason, tried)


async def _connect(addr: Address, tls: TLSConfig | None, *, budget: float, deadline: float) -> Connection:
    """One candidate: dial, probe with ListWorkers; raises ``ConnectFailed`` with a reason."""
    ssl_context: ssl.SSLContext | None = None
    if addr.scheme == "tcp" and tls is not None:
        try:
            ssl_context = tls.ssl_context()
        except (OSError, ssl.SSLError) as e:
            problem = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ConnectFailed(f"cannot load the TLS files of {tls}: {problem}") from e

    phase = "connecting"
    dial = make_dialer(addr, ssl_context, tls.server_name if tls else None)

    lost: list[BaseException] = []  # why the transport died, see instrumented()

    async def tracked_dial(factory: ProtocolFactory) -> H2Protocol:
        nonlocal phase
        phase = "connecting" if addr.scheme != "docker" else "upgrading POST /grpc to HTTP/2"
        proto = await dial(lambda: instrumented(factory, lost))
        phase = "waiting for a gRPC answer to ListWorkers"
        return proto

    if addr.scheme == "tcp":
        assert addr.host is not None
        assert addr.port is not None
        authority = ((tls.server_name if tls else None) or addr.host, addr.port)
    else:
        authority = ("localhost", 80)  # BuildKit ignores :authority on sockets
    channel: Channel | None = None
    try:
        async with asyncio.timeout_at(deadline):
            api_version: str | None = None
            if addr.scheme == "docker":
                assert addr.path is not None
                ping_sock = await unix_socket(asyncio.get_running_loop(), addr.path)
                phase = "asking the Docker API for its version (GET /_ping)"
                api_version = await docker_ping(ping_sock)
            channel = DialChannel(
                tracked_dial, dial_timeout=budget, authority=authority, ssl_context=ssl_context
            )
            reply = await control.ControlStub(channel).list_workers(control.ListWorkersRequest())
    except ConnectFailed:
        close_quietly(channel)
        raise
    except TimeoutError:
        close_quietly(channel)
        raise ConnectFailed(f"no answer within {budget:g}s while {phase}") from None
    except GRPCError as e:
        close_quietly(channel)
        hint = "; not a BuildKit daemon?" if e.status in (Status.UNIMPLEMENTED, Status.UNKNOWN) else ""
        raise ConnectFailed(f"ListWorkers failed: {e.status.name}: {e.message or ''}{hint}") from e
    except StreamTerminatedError as e:
        close_quietly(channel)
        why = describe_os_error(lost[0]) if lost else str(e)
        if addr.scheme == "tcp" and tls is None:
            hint = "not an HTTP/2 gRPC server, or does it need TLS?"
        elif addr.scheme == "tcp" and tls is not None and tls.cert is None:
            hint = "does the daemon require a client certificate (TLSConfig cert/key)?"
        else:
            hint = "not an HTTP/2 gRPC server?"
        raise ConnectFailed(f"connection closed while {phase} ({why}); {hint}") from e
    except (ProtocolError, h2.exceptions.ProtocolError) as e:
        close_quietly(channel)
        raise ConnectFailed(f"HTTP/2 protocol error while {phase}: {e}") from e
    except OSError as e:
        close_quietly(channel)
        reason = describe_os_error(e)
        if phase != "connecting":
            reason += f" while {phase}"
        if phase.startswith("asking the Docker API"):
            reason += "; not a Docker API socket?"
        raise ConnectFailed(reason) from e
    except BaseException:
        close_quietly(channel)
        raise

    workers = list(reply.record)
    return Connection(
        channel=channel,
        address=str(addr),
        is_moby=addr.scheme == "docker" or any(w.id == "moby" for w in workers),
        docker_api_version=api_version,
        docker_socket=addr.path if addr.scheme == "docker" else None,
        workers=workers,
    )

"""Forwarding sockets into build containers through the SSH-forward service (spec §3.4).

BuildKit exposes each ``llb.ssh_mount(dest, id=...)`` as a unix socket at ``dest`` in
the container. Every connection a process makes to it becomes one
``/moby.sshforward.v1.SSH/ForwardAgent`` stream to the client (metadata
``buildkit.ssh.id``), carrying the raw bytes both ways. Nothing in it is specific to
SSH agents, so the same service forwards any unix or TCP socket of the client host
(llblib's ``sockproxy``): :class:`SocketForwards` maps ids to targets, and
:class:`~llblib_async.attachables.ssh.SSHAgent` is the special case of an agent socket.

Each stream is spliced to a *new* connection to the target:

* stream -> target: message payloads are written in order; when the daemon
  half-closes (the container process shut down its write side, or closed), the
  target connection is half-closed (``shutdown(SHUT_WR)``) so it sees EOF but can
  still answer;
* target -> stream: bytes are sent in chunks of up to 32 KiB; when the target reaches
  EOF, the response stream ends, which the daemon turns into EOF for the container.

Only declared ids are served: ``CheckAgent`` (the daemon's check when it mounts the
socket) and ``ForwardAgent`` fail with ``NOT_FOUND`` for any other id. TCP targets
are dialled directly per connection (no intermediate unix listener, so nothing like
Go llblib's TCP forward deadlock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Union

import anyio
import grpclib.const
import grpclib.server
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from .._pb.moby.sshforward import v1 as ssh_pb

__all__ = [
    "CHECK_AGENT_METHOD",
    "DEFAULT_ID",
    "FORWARD_AGENT_METHOD",
    "ForwardedSocket",
    "SSHForwardService",
    "SocketForwards",
]

log = logging.getLogger("llblib_async.sshforward")

CHECK_AGENT_METHOD: Final = "/moby.sshforward.v1.SSH/CheckAgent"
FORWARD_AGENT_METHOD: Final = "/moby.sshforward.v1.SSH/ForwardAgent"
#: The id BuildKit uses when a mount or request names none.
DEFAULT_ID: Final = "default"
#: Metadata key of ``ForwardAgent`` calls naming the forward.
SSH_ID_KEY: Final = "buildkit.ssh.id"
#: Bytes read from the target per message (Go reads 32 KiB too).
READ_CHUNK: Final = 32 * 1024
#: Time allowed to connect to a target (Go dials agent sockets with 2 s).
CONNECT_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True)
class ForwardedSocket:
    """A socket of the client host: a unix socket ``path`` or a TCP ``host``:``port``.

    Build with :meth:`parse` (``"unix:///run/x.sock"``, ``"tcp://127.0.0.1:5432"``, or a
    plain path), :meth:`unix` or :meth:`tcp`. A unix path is made absolute when the
    forward is created; the socket itself need only exist when a container connects.
    """

    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __post_init__(self) -> None:
        if self.scheme == "unix":
            if not self.path or not os.path.isabs(self.path) or "\0" in self.path:
                raise ValueError(f"unix socket path must be absolute, got {self.path!r}")
        elif self.scheme == "tcp":
            if not self.host:
                raise ValueError("tcp forward needs a host")
            if not isinstance(self.port, int) or not 0 < self.port < 65536:
                raise ValueError(f"tcp forward needs a port in 1..65535, got {self.port!r}")
        else:
            raise ValueError(f"unsupported forward scheme {self.scheme!r} (use unix or tcp)")

    @classmethod
    def unix(cls, path: str | os.PathLike[str]) -> ForwardedSocket:
        return cls("unix", path=os.path.abspath(os.fspath(path)))

    @classmethod
    def tcp(cls, host: str, port: int) -> ForwardedSocket:
        return cls("tcp", host=host, port=port)

    @classmethod
    def parse(cls, target: str | os.PathLike[str] | ForwardedSocket) -> ForwardedSocket:
        """``unix:///abs/path``, ``unix:relative/path``, ``tcp://host:port``, or a filesystem path."""
        if isinstance(target, ForwardedSocket):
            return target
        text = os.fspath(target)
        if "://" not in text and not text.startswith("unix:"):
            return cls.unix(text)
        url = urllib.parse.urlsplit(text)
        if url.scheme == "unix":
            if url.netloc not in ("", "localhost"):
                raise ValueError(f"unix forward {text!r}: write unix:///absolute/path (three slashes)")
            return cls.unix(url.path)
        if url.scheme == "tcp":
            try:
                port = url.port
            except ValueError as e:
                raise ValueError(f"tcp forward {text!r}: {e}") from None
            if url.hostname is None or port is None or url.path not in ("", "/"):
                raise ValueError(f"tcp forward {text!r}: expected tcp://host:port")
            return cls.tcp(url.hostname, port)
        raise ValueError(f"unsupported forward scheme in {text!r} (use unix:// or tcp://)")

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection to the target (``OSError``/``TimeoutError`` on failure)."""
        if self.scheme == "unix":
            coro = asyncio.open_unix_connection(self.path, limit=READ_CHUNK * 2)
        else:
            coro = asyncio.open_connection(self.host, self.port, limit=READ_CHUNK * 2)
        reader, writer = await asyncio.wait_for(coro, CONNECT_TIMEOUT)
        if self.scheme == "tcp":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer


Target = Union[str, "os.PathLike[str]", ForwardedSocket]


def _normalise_id(fid: object) -> str:
    if not isinstance(fid, str):
        raise TypeError(f"forward id must be a str, got {type(fid).__name__}")
    return fid or DEFAULT_ID


class SSHForwardService:
    """The ``moby.sshforward.v1.SSH`` attachable: forward ids -> sockets of this host.

    One per session (the service can be served only once): combine forwards with
    ``a | b`` (ids must not overlap). ``connections`` counts the streams the daemon
    opened per id; ``active`` is the number being spliced right now.
    """

    def __init__(self, forwards: Mapping[str, Target] | None = None) -> None:
        self._forwards: dict[str, ForwardedSocket] = {}
        for fid, target in (forwards or {}).items():
            key = _normalise_id(fid)
            if key in self._forwards:
                raise ValueError(f"duplicate forward id {key!r}")
            self._forwards[key] = ForwardedSocket.parse(target)
        self.connections: dict[str, int] = {}
        self.active = 0

    @property
    def forwards(self) -> dict[str, ForwardedSocket]:
        return dict(self._forwards)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {str(v)!r}" for k, v in self._forwards.items())
        return f"{type(self).__name__}({{{inner}}})"

    def __or__(self, other: SSHForwardService) -> SSHForwardService:
        if not isinstance(other, SSHForwardService):
            return NotImplemented
        overlap = sorted(set(self._forwards) & set(other._forwards))
        if overlap:
            raise ValueError(f"forward ids declared twice: {', '.join(overlap)}")
        return SSHForwardService({**self._forwards, **other._forwards})

    def _target(self, fid: str) -> ForwardedSocket:
        target = self._forwards.get(fid or DEFAULT_ID)
        if target is None:
            known = ", ".join(sorted(self._forwards)) or "none"
            raise GRPCError(
                Status.NOT_FOUND, f"unset ssh forward key {fid or DEFAULT_ID} (declared: {known})"
            )
        return target

    async def _check_agent(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, ssh_pb.CheckAgentRequest)
        self._target(request.id)
        await stream.send_message(ssh_pb.CheckAgentResponse())

    async def _forward_agent(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        values = stream.metadata.getall(SSH_ID_KEY, []) if stream.metadata is not None else []
        fid = str(values[0]) if values else DEFAULT_ID
        target = self._target(fid)
        fid = fid or DEFAULT_ID
        self.connections[fid] = self.connections.get(fid, 0) + 1
        try:
            reader, writer = await target.connect()
        except (TimeoutError, OSError) as e:
            reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
            log.debug("forward %s: cannot connect to %s: %s", fid, target, reason)
            raise GRPCError(
                Status.UNAVAILABLE, f"ssh forward {fid}: cannot connect to {target}: {reason}"
            ) from None
        self.active += 1
        log.debug("forward %s: connected to %s", fid, target)
        try:
            await _splice(stream, reader, writer)
        finally:
            self.active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            CHECK_AGENT_METHOD: grpclib.const.Handler(
                self._check_agent,
                grpclib.const.Cardinality.UNARY_UNARY,
                ssh_pb.CheckAgentRequest,
                ssh_pb.CheckAgentResponse,
            ),
            FORWARD_AGENT_METHOD: grpclib.const.Handler(
                self._forward_agent,
                grpclib.const.Cardinality.STREAM_STREAM,
                ssh_pb.BytesMessage,
                ssh_pb.BytesMessage,
            ),
        }


class SocketForwards(SSHForwardService):
    """Forward unix or TCP sockets of this host into build steps, keyed by id.

    ``SocketForwards({"db": "tcp://127.0.0.1:5432", "docker": "unix:///run/docker.sock"})``
    with ``llb.ssh_mount("/run/db.sock", id="db", uid=..., mode=0o660)`` on the exec:
    each connection to ``/run/db.sock`` in the container reaches a new connection to
    the target. A mount naming an undeclared id fails the build.
    """


async def _splice(
    stream: grpclib.server.Stream[Any, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Copy stream <-> connection until the target's EOF; half-close the target on the stream's end.

    If the daemon resets the call (the container's connection broke), the target
    connection is dropped; if the target resets, the call ends as on EOF.
    """
    async with anyio.create_task_group() as tg:

        async def inbound() -> None:
            try:
                while (msg := await stream.recv_message()) is not None:
                    if msg.data:
                        writer.write(msg.data)
                        await writer.drain()
            except ConnectionError:
                return  # the target went away: the outbound side sees it too
            except StreamTerminatedError:
                tg.cancel_scope.cancel()
                return
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()
                else:  # pragma: no cover - unix and TCP sockets can
                    writer.close()

        tg.start_soon(inbound)
        try:
            while data := await reader.read(READ_CHUNK):
                await stream.send_message(ssh_pb.BytesMessage(data=data))
        except (ConnectionError, StreamTerminatedError):
            pass  # target reset: end the call as on EOF; call reset: nobody to tell
        # Target EOF: end the response stream (the daemon gives the container EOF); the
        # daemon cannot send more once the call is over, so stop reading it too.
        tg.cancel_scope.cancel()

"""Dialing the daemon: one grpclib ``Channel`` for unix, TCP, TLS and the Docker ``/grpc`` upgrade.

:class:`DialChannel` is a grpclib channel whose transport comes from our own dialer
(:func:`make_dialer`), so every (re)dial is bounded and every kind of address uses the
same channel class. :func:`instrumented` hooks each connection's protocol as it is
made: the HTTP/2 fast paths are installed on it (:mod:`.h2fast`, explicitly, for this
connection only), its writes are coalesced (:class:`CoalescingTransport`), and the
reason a transport died is kept for the error message grpclib would otherwise lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from grpclib.client import Channel
from grpclib.protocol import H2Protocol

from .address import Address
from .dial_failure import ConnectFailed
from .docker_http import hijack
from .grpc_errors import BuildKitStatusDetailsCodec
from .h2fast import FastReceiver, use_fast_streams

__all__ = [
    "UNIX_SNDBUF",
    "CoalescingTransport",
    "DialChannel",
    "Dialer",
    "NotHTTP2Error",
    "ProtocolFactory",
    "close_quietly",
    "instrumented",
    "make_dialer",
]

ProtocolFactory = Callable[[], H2Protocol]
Dialer = Callable[[ProtocolFactory], Awaitable[H2Protocol]]


class DialChannel(Channel):
    """A grpclib ``Channel`` whose transport is made by our own *dialer*.

    **grpclib private API, pinned grpclib==0.4.9** -- the only place the client side relies on it:
    ``Channel.__connect__`` calls ``self._create_connection()`` whenever it has no live
    connection (first call, and after the connection dropped) and expects the connected
    ``H2Protocol`` back; ``self._protocol_factory`` builds that protocol with the channel's
    HTTP/2 settings.  Overriding ``_create_connection`` lets one Channel class serve unix, TCP,
    TLS and the Docker ``/grpc`` upgrade, with every (re)dial bounded by ``dial_timeout``.

    ``authority`` only feeds grpclib's ``:authority`` header (BuildKit ignores it; Go sends the
    TLS server name, or the host); ``ssl`` only selects the ``https`` ``:scheme`` -- the dialer
    does the TLS handshake itself.
    """

    def __init__(
        self,
        dial: Dialer,
        *,
        dial_timeout: float,
        authority: tuple[str, int],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(
            authority[0],
            authority[1],
            ssl=ssl_context,
            status_details_codec=BuildKitStatusDetailsCodec(),
        )
        self._dial = dial
        self._dial_timeout = dial_timeout

    async def _create_connection(self) -> H2Protocol:
        try:
            async with asyncio.timeout(self._dial_timeout):
                return await self._dial(self._protocol_factory)
        except TimeoutError:
            # A re-dial during some later call: say "could not connect", which callers map
            # to ConnectionLostError, rather than a bare TimeoutError that reads like the
            # call's own deadline.
            raise ConnectionError(f"could not connect within {self._dial_timeout:g}s") from None


#: Send buffer asked for on unix sockets to the daemon (the kernel caps it at
#: ``net.core.wmem_max``). On a unix socket the sender's buffer is all the data in
#: flight: with the default ~208 KiB a 1 MiB session message took five socket writes,
#: each waiting for the event loop to get round to the next, and the daemon idled in
#: between (upload of 256 MiB: 1.5 s -> 1.0 s with 4 MiB). TCP keeps the kernel's
#: autotuning, which setting SO_SNDBUF would switch off.
UNIX_SNDBUF = 4 * 1024 * 1024


def tune_unix_socket(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # best effort
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < UNIX_SNDBUF:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SNDBUF)


def make_dialer(addr: Address, ssl_context: ssl.SSLContext | None, server_name: str | None) -> Dialer:
    loop = asyncio.get_running_loop()
    if addr.scheme == "unix":
        assert addr.path is not None
        path = addr.path

        async def dial_unix(factory: ProtocolFactory) -> H2Protocol:
            transport, proto = await loop.create_unix_connection(factory, path)
            tune_unix_socket(transport)
            return proto

        return dial_unix

    if addr.scheme == "docker":
        assert addr.path is not None
        docker_path = addr.path

        async def dial_docker(factory: ProtocolFactory) -> H2Protocol:
            sock = await hijack(docker_path, "/grpc", ())
            try:
                transport, proto = await loop.create_unix_connection(factory, sock=sock)
                tune_unix_socket(transport)
            except BaseException:
                sock.close()
                raise
            return proto

        return dial_docker

    assert addr.host is not None
    assert addr.port is not None
    host, port = addr.host, addr.port

    async def dial_tcp(factory: ProtocolFactory) -> H2Protocol:
        transport, proto = await loop.create_connection(
            factory,
            host,
            port,
            ssl=ssl_context,
            server_hostname=(server_name or host) if ssl_context is not None else None,
        )
        if ssl_context is not None:
            ssl_obj = transport.get_extra_info("ssl_object")
            alpn = ssl_obj.selected_alpn_protocol() if ssl_obj is not None else None
            # None = server does no ALPN (tolerated); anything else cannot carry gRPC.
            if alpn not in (None, "h2"):
                transport.close()
                raise ConnectFailed(f"TLS server negotiated {alpn!r} instead of HTTP/2 (ALPN h2)")
        return proto

    return dial_tcp


class NotHTTP2Error(ConnectionError):
    """The peer answered our HTTP/2 connection preface in HTTP/1.x."""


class CoalescingTransport(asyncio.Transport):
    """The socket transport as grpclib's protocol sees it: one ``write`` per loop iteration.

    grpclib writes each HTTP/2 operation on its own (a message, every flush after the
    frames it received: PING and SETTINGS acks, WINDOW_UPDATEs), and asyncio turns
    every write into a ``send()`` when its buffer is empty. During a session that is
    thousands of small sends, each waking the daemon, whose grpc-go answers many of
    them with a BDP PING plus WINDOW_UPDATE of its own (one more send from us). Here
    what is written during one event-loop iteration is queued and leaves as one write
    (scheduled with ``call_soon``, so before any I/O wait); ``close`` flushes first.
    Backpressure is untouched: the socket transport still pauses the protocol itself,
    and at most one iteration's writes wait here.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0
        self._loop = asyncio.get_running_loop()
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._pending.append(data if isinstance(data, bytes) else bytes(data))
            self._queued(len(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        n = 0
        for data in list_of_data:
            if not isinstance(data, bytes) and not (isinstance(data, memoryview) and data.readonly):
                data = bytes(data)  # a mutable buffer may change before the flush
            if data:
                self._pending.append(data)
                n += len(data)
        if n:
            self._queued(n)

    def _queued(self, n: int) -> None:
        self._pending_size += n
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending, self._pending_size = self._pending, [], 0
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._pending_size = [], 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._pending_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()


def instrumented(factory: ProtocolFactory, lost: list[BaseException]) -> H2Protocol:
    """``factory()``, with two diagnostics grpclib lacks, hooked on the (public) asyncio
    ``Protocol`` callbacks of the instance:

    * the exception the transport dies with is appended to ``lost``: grpclib only tells the
      call "Connection lost", yet that exception is often the only diagnosis (a TLS 1.3
      server rejects a missing client certificate after the handshake, on the first read);
    * an HTTP/1.x answer closes the connection at once (recorded in ``lost``): h2 reads
      ``HTTP/1.1 ...`` as a frame header announcing a ~4.7 MB frame and waits for it, so
      the probe would otherwise hang until the timeout.
    """
    proto = factory()
    made, received, gone = proto.connection_made, proto.data_received, proto.connection_lost
    conn_transport: asyncio.BaseTransport | None = None
    first = True
    fast: list[Callable[[bytes], None]] = []

    def connection_made(transport: asyncio.BaseTransport) -> None:
        nonlocal conn_transport
        conn_transport = transport
        assert isinstance(transport, asyncio.Transport)
        made(CoalescingTransport(transport))
        # the HTTP/2 fast paths, for this connection only (DATA frames serialized and parsed by hand)
        use_fast_streams(proto.connection)
        receiver = FastReceiver(proto, server=False, deliver=received)
        fast.append(receiver.data_received)

    def data_received(data: bytes) -> None:
        nonlocal first
        if first:
            first = False
            if data.startswith(b"HTTP/") and conn_transport is not None:
                status_line = data.split(b"\r\n", 1)[0][:80].decode("latin-1")
                lost.append(NotHTTP2Error(f"the server answered in HTTP/1.x: {status_line!r}"))
                conn_transport.close()
                return
        (fast[0] if fast else received)(data)

    def connection_lost(exc: BaseException | None) -> None:
        if exc is not None:
            lost.append(exc)
        gone(exc)

    proto.connection_made = connection_made  # type: ignore[method-assign]
    proto.data_received = data_received  # type: ignore[method-assign]
    proto.connection_lost = connection_lost  # type: ignore[method-assign]
    return proto


def close_quietly(channel: Channel | None) -> None:
    if channel is not None:
        channel.close()

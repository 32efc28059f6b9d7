"""The BuildKit session: a gRPC *server* running inside a byte stream.

BuildKit calls back into the client (local directories, exporter output, secrets,
auth...) through a session: the client opens ``Control.Session`` (a bidi stream of
``BytesMessage``), and inside the concatenated bytes of that stream the daemon speaks
HTTP/2 + gRPC as the *client* while we are the *server* (spec §2). Docker's
``/session`` endpoint is the same thing over a hijacked socket.

Layout:

* :class:`BytePipe` -- any full-duplex byte stream; :class:`_GrpcStreamPipe` (the
  ``Control.Session`` call) and :class:`StreamPipe` (asyncio reader/writer, e.g. a
  socket) implement it.
* :class:`_OutboundBuffer` -- the fake ``asyncio.Transport`` handed to grpclib's HTTP/2
  server protocol. Its writes go to a queue drained by one writer task; above
  ``high_water`` queued bytes it pauses the protocol (grpclib then blocks every
  ``send_message`` on its ``write_ready`` event) and resumes below ``low_water``, so
  a fast sender can't buffer unbounded memory when the daemon reads slowly.
  Inbound needs no extra logic: grpclib only acknowledges HTTP/2 DATA once a handler
  has consumed it, so the daemon can't send more than the flow-control windows.
* :func:`serve_session` -- runs the server over a pipe (reader task, writer task),
  exposes a :class:`SessionHandle` and shuts down cleanly; :func:`open_session` and
  :func:`serve_session_streams` wrap it for the two transports.

grpclib private API is used in exactly one place, :func:`_new_server_protocol`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import anyio
import grpclib.const
import grpclib.server
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.protocol import H2Protocol

from ._pb.grpc.health import v1 as health
from .errors import ConnectionLostError, DaemonUnreachableError

__all__ = [
    "HEALTH_CHECK_METHOD",
    "SESSION_METHOD",
    "Attachable",
    "BytePipe",
    "HealthService",
    "RawMessage",
    "SessionHandle",
    "StreamPipe",
    "open_session",
    "serve_session",
    "serve_session_streams",
    "session_headers",
]

log = logging.getLogger("llblib_async.session")

SESSION_METHOD = "/moby.buildkit.v1.Control/Session"
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"

#: Pause the HTTP/2 protocol when this many bytes wait to be sent ...
DEFAULT_HIGH_WATER = 4 * 1024 * 1024
#: ... and resume it when the queue drained below this.
DEFAULT_LOW_WATER = 1 * 1024 * 1024
#: Largest ``BytesMessage`` the writer sends (queued writes are coalesced up to this;
#: the daemon accepts up to 16 MiB per message).
DEFAULT_MAX_CHUNK = 1 * 1024 * 1024
#: How long a clean shutdown waits for handlers to unwind and for the daemon to
#: acknowledge our half-close before cutting the stream.
DEFAULT_CLOSE_TIMEOUT = 5.0

T = TypeVar("T")


class Attachable(Protocol):
    """A service served inside the session: grpclib's ``IServable`` protocol.

    ``__mapping__`` returns ``{"/pkg.Service/Method": grpclib.const.Handler}``; the
    handler coroutines get grpclib's raw ``Stream`` (so they can read request
    metadata such as ``dir-name``). Every key is advertised to the daemon.
    """

    def __mapping__(self) -> Mapping[str, grpclib.const.Handler]: ...


class RawMessage:
    """Pass-through "message" for grpclib's ``ProtoCodec``: the payload bytes as is.

    For handlers whose payload type depends on the call (FileSend: fsutil packets for
    a directory target, raw tar bytes for a file target) or that encode by hand.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    @classmethod
    def FromString(cls, data: bytes) -> RawMessage:  # grpclib's codec calls these names
        return cls(bytes(data))

    def SerializeToString(self) -> bytes:
        return self.data


class _BytesMessage:
    """``moby.buildkit.v1.BytesMessage`` (``bytes data = 1``) encoded by hand.

    Every chunk of the session byte stream is one of these; betterproto2's generic
    (de)serialization costs tens of microseconds per message, a copy-free hand codec
    next to nothing. The wire format is the generated class's: field 1 as a
    length-delimited record, left out when empty (proto3); unknown fields are skipped.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    @classmethod
    def FromString(cls, buf: bytes) -> _BytesMessage:
        n = len(buf)
        # fast path: the whole message is field 1 (what every sender produces)
        if n > 1 and buf[0] == 0x0A:
            length, pos = _read_varint(buf, 1)
            if pos + length == n:
                return cls(buf[pos:] if pos else buf)
        data = b""
        pos = 0
        while pos < n:
            key, pos = _read_varint(buf, pos)
            wire_type = key & 7
            if wire_type == 0:
                _, pos = _read_varint(buf, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 2:
                length, pos = _read_varint(buf, pos)
                if key >> 3 == 1:
                    data = buf[pos : pos + length]
                pos += length
            elif wire_type == 5:
                pos += 4
            else:
                raise ValueError(f"BytesMessage: unsupported wire type {wire_type}")
        if pos != n:
            raise ValueError("BytesMessage: truncated message")
        return cls(bytes(data))

    def SerializeToString(self) -> bytes:
        data = self.data
        if not data:
            return b""
        return b"\x0a" + _varint(len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("BytesMessage: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


class HealthService:
    """``grpc.health.v1.Health/Check`` answering SERVING (the daemon polls it every 5 s)."""

    def __init__(self) -> None:
        self.checks = 0
        self._checked = anyio.Condition()

    async def _check(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(
            health.HealthCheckResponse(status=health.HealthCheckResponseServingStatus.SERVING)
        )
        self.checks += 1
        async with self._checked:
            self._checked.notify_all()

    async def wait_check(self) -> None:
        """Wait until the next health check has been answered."""
        async with self._checked:
            await self._checked.wait()

    def __mapping__(self) -> Mapping[str, grpclib.const.Handler]:
        return {
            HEALTH_CHECK_METHOD: grpclib.const.Handler(
                self._check,
                grpclib.const.Cardinality.UNARY_UNARY,
                health.HealthCheckRequest,
                health.HealthCheckResponse,
            )
        }


def _header_value(value: str) -> tuple[str, bool]:
    """Go's ``encodeHeaderValue``: URL-encode values grpc metadata can't carry."""
    if all(0x20 <= ord(c) <= 0x7E for c in value):
        return value, False
    return urllib.parse.quote_plus(value), True


def session_headers(
    session_id: str,
    *,
    methods: Iterable[str],
    shared_key: str = "",
    name: str = "",
    health_check_ms: int | None = None,
) -> list[tuple[str, str]]:
    """The ``x-docker-expose-session-*`` metadata that opens a session.

    One ``x-docker-expose-session-grpc-method`` entry per served method. Empty values
    are left out (grpclib refuses them and the daemon treats absent as empty). Also
    the headers of Docker's ``/session`` upgrade request. ``health_check_ms``
    (BuildKit >= v0.32, a test hook) makes the daemon check health at that interval
    (>= 1000) with that timeout, closing the session after one failure.
    """
    md: list[tuple[str, str]] = [("x-docker-expose-session-uuid", session_id)]
    if name:
        value, encoded = _header_value(name)
        md.append(("x-docker-expose-session-name", value))
    if shared_key:
        value, encoded = _header_value(shared_key)
        md.append(("x-docker-expose-session-sharedkey", value))
        if encoded:
            md.append(("x-docker-expose-session-sharedkey-encoded", "1"))
    md.extend(("x-docker-expose-session-grpc-method", m) for m in methods)
    if health_check_ms is not None:
        md.append(("x-buildkit-session-health-custom-timeout", str(int(health_check_ms))))
    return md


def _collect_mapping(attachables: Iterable[Attachable]) -> dict[str, grpclib.const.Handler]:
    """Merge the attachables' handlers (after the built-in health check)."""
    mapping: dict[str, grpclib.const.Handler] = {}
    owners: dict[str, Attachable] = {}
    for a in attachables:
        for path, handler in a.__mapping__().items():
            if path in owners:
                raise ValueError(f"session method {path} is served by both {owners[path]!r} and {a!r}")
            owners[path] = a
            mapping[path] = handler
    return mapping


class _Servable:
    """Adapter: a merged mapping as one grpclib ``IServable``."""

    def __init__(self, mapping: Mapping[str, grpclib.const.Handler]) -> None:
        self._mapping = dict(mapping)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return self._mapping


class _UnimplementedByDefault(dict[str, grpclib.const.Handler]):
    """Handler mapping answering unknown methods with a *proper* UNIMPLEMENTED.

    grpclib answers an unknown method with a bare trailers-only response lacking
    ``content-type``; grpc-go (the daemon's session client) then reports code
    Unknown ("malformed header: missing HTTP content-type"), not Unimplemented --
    and the daemon only treats Unimplemented as "the client doesn't provide this"
    (no credentials -> anonymous pull, no secret -> not found). A real handler that
    raises makes grpclib send a well-formed gRPC status instead.
    """

    def get(self, key: str, default: Any = None) -> Any:
        handler = super().get(key)
        if handler is not None:
            return handler

        async def unimplemented(stream: grpclib.server.Stream[Any, Any]) -> None:
            raise GRPCError(Status.UNIMPLEMENTED, f"unknown method {key}")

        return grpclib.const.Handler(
            unimplemented, grpclib.const.Cardinality.STREAM_STREAM, RawMessage, RawMessage
        )


def _new_server_protocol(mapping: Mapping[str, grpclib.const.Handler]) -> H2Protocol:
    """An HTTP/2 gRPC server protocol for one connection -- the only private grpclib use.

    ``grpclib.server.Server`` normally creates these in ``loop.create_server``;
    ``Server._protocol_factory()`` (private, stable since grpclib 0.3, pinned to 0.4.9
    in pyproject) is the way to get one bound to our own fake transport. Before that,
    ``Server._mapping`` (the dict the request handler looks methods up in) is swapped
    for :class:`_UnimplementedByDefault`. The rest is public-ish API of the returned
    objects: ``H2Protocol.connection_made / data_received / connection_lost /
    pause_writing / resume_writing`` (asyncio's Protocol interface) and
    ``H2Protocol.handler.wait_closed()``.

    An explicit ``ProtoCodec`` (and no status-details codec) keeps grpclib from
    reaching for ``google.protobuf``, which this package does not depend on.
    """
    server = grpclib.server.Server([_Servable(mapping)], codec=ProtoCodec(), status_details_codec=None)
    server._mapping = _UnimplementedByDefault(server._mapping)
    return server._protocol_factory()


# --------------------------------------------------------------------------- byte pipes


class BytePipe(Protocol):
    """A full-duplex byte stream carrying the session's HTTP/2 connection."""

    async def receive(self) -> bytes | None:
        """Next chunk from the daemon; ``None`` at a clean end of stream."""
        ...

    async def send(self, data: bytes) -> None:
        """Send a chunk; waits while the transport applies backpressure."""
        ...

    async def send_eof(self) -> None:
        """Half-close our sending side (the daemon then drops the session)."""
        ...

    async def aclose(self) -> None:
        """Release the transport (abort it if it did not end cleanly)."""
        ...


class _GrpcStreamPipe:
    """``Control.Session``: every ``BytesMessage.data`` is a chunk of the byte stream."""

    def __init__(self, stream: Any) -> None:
        # grpclib.client.Stream[BytesMessage, BytesMessage]; typed loosely because
        # grpclib's generic parameters don't line up with betterproto2's classes.
        self._stream = stream
        self._ended = False
        self._finished = False

    async def receive(self) -> bytes | None:
        msg = await self._stream.recv_message()
        if msg is not None:
            data: bytes = msg.data
            return data
        # The daemon ended the call. grpclib only reads the status once our side is
        # ended too, which is moot now; then GRPCError tells a failure from a clean end.
        if not self._ended:
            self._ended = True
            with contextlib.suppress(Exception):  # best effort: the stream may be closed
                await self._stream.end()
        try:
            await self._stream.recv_trailing_metadata()
        except ProtocolError:
            pass
        finally:
            self._finished = True
        return None

    async def send(self, data: bytes) -> None:
        await self._stream.send_message(_BytesMessage(data))

    async def send_eof(self) -> None:
        if not self._ended:
            self._ended = True
            await self._stream.end()

    async def aclose(self) -> None:
        if not self._finished:
            # Without this grpclib's Stream.__aexit__ would wait for the daemon's
            # trailers forever; RST_STREAM ends the call instead.
            with contextlib.suppress(Exception):  # best effort on a possibly dead stream
                await self._stream.cancel()


class StreamPipe:
    """A :class:`BytePipe` over an asyncio ``(StreamReader, StreamWriter)`` pair.

    For Docker's ``/session`` hijack, or a socket: ``StreamPipe(*await
    asyncio.open_connection(sock=sock))``.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, read_size: int = 65536):
        self._reader = reader
        self._writer = writer
        self._read_size = read_size

    async def receive(self) -> bytes | None:
        data = await self._reader.read(self._read_size)
        return data or None

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()  # the socket's own backpressure

    async def send_eof(self) -> None:
        if self._writer.can_write_eof():
            self._writer.write_eof()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


# --------------------------------------------------------------------------- transport


class _OutboundBuffer(asyncio.Transport):
    """The transport grpclib's HTTP/2 protocol writes into: a bounded queue.

    ``write`` never blocks (asyncio transports can't); flow control is the
    protocol's ``pause_writing``/``resume_writing`` around the watermarks. h2 control
    frames (SETTINGS/PING/WINDOW_UPDATE acks) are still written while paused, as with
    any asyncio transport; they are tiny.
    """

    def __init__(self, *, high_water: int, low_water: int, label: str) -> None:
        super().__init__()
        if not 0 <= low_water <= high_water:
            raise ValueError("need 0 <= low_water <= high_water")
        self._high = high_water
        self._low = low_water
        self._label = label
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._protocol: asyncio.BaseProtocol | None = None
        self._paused = False
        self._closing = False
        self._wakeup = asyncio.Event()
        self.max_buffered = 0  # high-water statistics (tests check the bound)
        self.pauses = 0
        #: set while the protocol is paused (lets tests observe backpressure)
        self.paused = asyncio.Event()

    # asyncio.Transport API ------------------------------------------------------
    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._label
        return default

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return  # after close grpclib may still flush RST frames: nowhere to go
        self._chunks.append(bytes(data))
        self._size += len(data)
        self.max_buffered = max(self.max_buffered, self._size)
        self._wakeup.set()
        if not self._paused and self._size > self._high and self._protocol is not None:
            self._paused = True
            self.pauses += 1
            self.paused.set()
            self._protocol.pause_writing()

    def close(self) -> None:
        """Stop accepting writes; the writer still sends what is queued, then EOF."""
        self._closing = True
        self._wakeup.set()

    def abort(self) -> None:
        """Stop and drop what is queued (the peer is gone)."""
        self._closing = True
        self._chunks.clear()
        self._size = 0
        self._wakeup.set()

    def get_write_buffer_size(self) -> int:
        return self._size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def can_write_eof(self) -> bool:
        return False

    # writer side -----------------------------------------------------------------
    async def next_chunk(self, max_size: int) -> bytes | None:
        """Queued bytes (coalesced up to ``max_size``); ``None`` once closed and drained."""
        while not self._chunks:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        parts: list[bytes] = []
        n = 0
        while self._chunks and n < max_size:
            chunk = self._chunks[0]
            room = max_size - n
            if len(chunk) > room:
                parts.append(chunk[:room])
                self._chunks[0] = chunk[room:]
                n += room
                break
            parts.append(self._chunks.popleft())
            n += len(chunk)
        self._size -= n
        if self._paused and self._size <= self._low and self._protocol is not None:
            self._paused = False
            self.paused.clear()
            self._protocol.resume_writing()
        return parts[0] if len(parts) == 1 else b"".join(parts)


# --------------------------------------------------------------------------- handle


class SessionHandle:
    """A running session.

    ``closed`` is set once the session is over -- because we closed it or because the
    daemon side went away; in the latter case ``exception`` says why
    (:class:`~llblib_async.errors.ConnectionLostError`), so callers can fail builds
    that need the session instead of waiting (see :meth:`guard`).
    """

    def __init__(self, session_id: str, methods: Sequence[str], label: str, health: HealthService) -> None:
        self.id = session_id
        self.methods: tuple[str, ...] = tuple(methods)
        self.label = label
        self.closed = anyio.Event()
        self._exception: BaseException | None = None
        self._health = health
        self._transport: _OutboundBuffer | None = None

    @property
    def exception(self) -> BaseException | None:
        """Why the session ended early (``None`` while running or after a clean close)."""
        return self._exception

    @property
    def health_checks(self) -> int:
        """How many health checks the daemon made (it polls every 5 s)."""
        return self._health.checks

    @property
    def max_buffered(self) -> int:
        """Most bytes ever queued for sending (bounded by the high-water mark + one write)."""
        return self._transport.max_buffered if self._transport is not None else 0

    @property
    def pauses(self) -> int:
        """How often backpressure paused the HTTP/2 protocol."""
        return self._transport.pauses if self._transport is not None else 0

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def wait_health_check(self) -> None:
        """Wait until the daemon's next health check has been answered (diagnostics)."""
        await self._health.wait_check()

    def _lost(self) -> ConnectionLostError:
        """A fresh error for one caller (the same object raised twice grows its traceback)."""
        exc = self._exception
        if isinstance(exc, ConnectionLostError):
            err = ConnectionLostError(exc.address, exc.reason)
            err.__cause__ = exc.__cause__
            return err
        err = ConnectionLostError(self.label, str(exc) if exc is not None else "session closed")
        err.__cause__ = exc
        return err

    def raise_if_closed(self) -> None:
        """Raise :class:`~llblib_async.errors.ConnectionLostError` if the session is over."""
        if self._exception is not None or self.closed.is_set():
            raise self._lost()

    async def guard(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()``; if the session dies first, cancel it and raise ConnectionLostError.

        If ``fn`` fails while the session is dead (a Solve failing with "no active
        session", say), the session's error is raised with ``fn``'s as its cause.
        """
        self.raise_if_closed()
        outcome: list[T] = []
        failure: list[Exception] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await self.closed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            # fn's own exception is kept outside the task group, which would wrap it
            # in an ExceptionGroup.
            try:
                outcome.append(await fn())
            except Exception as e:
                failure.append(e)
            tg.cancel_scope.cancel()
        if failure:
            if self._exception is not None:
                raise self._lost() from failure[0]
            raise failure[0]
        if outcome:
            return outcome[0]
        raise self._lost()

    def _fail(self, exc: BaseException) -> None:
        if self._exception is None and not self.closed.is_set():
            self._exception = exc


# --------------------------------------------------------------------------- server loop


class _SessionServer:
    """Reader + writer tasks connecting a :class:`BytePipe` to grpclib's protocol."""

    def __init__(
        self,
        pipe: BytePipe,
        mapping: Mapping[str, grpclib.const.Handler],
        handle: SessionHandle,
        *,
        high_water: int,
        low_water: int,
        max_chunk: int,
        close_timeout: float,
    ) -> None:
        self._pipe = pipe
        self._handle = handle
        self._max_chunk = max_chunk
        self._close_timeout = close_timeout
        self._transport = _OutboundBuffer(high_water=high_water, low_water=low_water, label=handle.label)
        handle._transport = self._transport
        self._protocol = _new_server_protocol(mapping)
        self._transport.set_protocol(self._protocol)
        self._closing = False  # we started the shutdown (EOF is then expected)
        self._peer_failed = False
        self._protocol_lost = False
        self._reader_done = anyio.Event()
        self._reader_scope = anyio.CancelScope()

    def start(self) -> None:
        # Writes our SETTINGS frame into the queue right away, as a server must.
        self._protocol.connection_made(self._transport)

    def _lose_protocol(self) -> None:
        """Tell grpclib the connection is gone: cancels running handlers, closes the transport."""
        if not self._protocol_lost:
            self._protocol_lost = True
            self._protocol.connection_lost(None)

    def _peer_gone(self, exc: BaseException) -> None:
        self._peer_failed = True
        self._handle._fail(exc)
        self._transport.abort()
        self._lose_protocol()
        self._handle.closed.set()

    def _failure(self, e: BaseException) -> ConnectionLostError:
        reason = f"{e.status.name}: {e.message}" if isinstance(e, GRPCError) else (str(e) or type(e).__name__)
        return ConnectionLostError(self._handle.label, reason)

    async def reader(self) -> None:
        with self._reader_scope:
            try:
                while True:
                    data = await self._pipe.receive()
                    if data is None:
                        break
                    if not self._protocol_lost:
                        self._protocol.data_received(data)
                if not self._closing:
                    self._peer_gone(ConnectionLostError(self._handle.label, "the daemon closed the session"))
            except Exception as e:
                # Any failure of the transport (gRPC status, reset, socket error) ends
                # the session; record it instead of tearing down the caller's task.
                log.debug("session %s: receive failed", self._handle.id, exc_info=True)
                if not self._closing:
                    self._peer_gone(self._failure(e))
        self._reader_done.set()

    async def writer(self) -> None:
        try:
            while True:
                # Let the handlers that are ready run first: what they write joins
                # this BytesMessage, so many small packets (a tree of small files)
                # make few messages and socket writes instead of one each.
                await asyncio.sleep(0)
                chunk = await self._transport.next_chunk(self._max_chunk)
                if chunk is None:
                    break
                await self._pipe.send(chunk)
            if self._closing and not self._peer_failed:
                await self._pipe.send_eof()
        except Exception as e:
            log.debug("session %s: send failed", self._handle.id, exc_info=True)
            if not self._peer_failed:
                self._peer_gone(self._failure(e))
                # The reader may sit in receive() on a transport that never reports
                # the failure; nothing more can arrive that matters.
                self._reader_scope.cancel()

    async def shutdown(self) -> None:
        """Clean close: cancel handlers, flush, half-close, wait for the daemon's EOF."""
        self._closing = True
        handler = self._protocol.handler
        assert isinstance(handler, grpclib.server.Handler)
        self._lose_protocol()  # cancels handlers and closes the transport (drained, then EOF)
        with anyio.move_on_after(self._close_timeout):
            await handler.wait_closed()
        with anyio.move_on_after(self._close_timeout):
            await self._reader_done.wait()
        self._reader_scope.cancel()
        self._handle.closed.set()


@contextlib.asynccontextmanager
async def serve_session(
    pipe: BytePipe,
    attachables: Iterable[Attachable] = (),
    *,
    session_id: str = "",
    label: str = "session",
    high_water: int = DEFAULT_HIGH_WATER,
    low_water: int = DEFAULT_LOW_WATER,
    max_chunk: int = DEFAULT_MAX_CHUNK,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
) -> AsyncIterator[SessionHandle]:
    """Serve ``attachables`` (+ health checks) over an already-open byte pipe.

    The pipe must already be "opened" as a session on the daemon side (headers from
    :func:`session_headers`). On exit the handlers are cancelled, queued bytes are
    flushed, our side is half-closed and, after the daemon's end of stream (at most
    ``close_timeout`` s), the pipe is closed. No task outlives the block.
    """
    health_svc = HealthService()
    mapping = {**health_svc.__mapping__(), **_collect_mapping(attachables)}
    handle = SessionHandle(session_id, sorted(mapping), label, health_svc)
    server = _SessionServer(
        pipe,
        mapping,
        handle,
        high_water=high_water,
        low_water=low_water,
        max_chunk=max_chunk,
        close_timeout=close_timeout,
    )
    # The caller's exception is kept out of the task group and re-raised after it:
    # anyio would wrap it in an ExceptionGroup, and `except GRPCError` around the
    # `async with` must keep working.
    body_error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            server.start()
            tg.start_soon(server.reader)
            tg.start_soon(server.writer)
            try:
                yield handle
            except BaseException as e:
                body_error = e
            finally:
                with anyio.CancelScope(shield=True):
                    await server.shutdown()
                    # The writer ends by itself once the queue is drained (bounded by
                    # the daemon reading it); don't let a stuck daemon hold us here.
                    tg.cancel_scope.deadline = anyio.current_time() + close_timeout
        if body_error is not None:
            raise body_error
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(close_timeout):
            await pipe.aclose()
        handle.closed.set()


@contextlib.asynccontextmanager
async def open_session(
    channel: Channel,
    *,
    session_id: str,
    shared_key: str = "",
    name: str = "llblib-async",
    attachables: Sequence[Attachable] = (),
    address: str = "buildkitd",
    health_check_ms: int | None = None,
    high_water: int = DEFAULT_HIGH_WATER,
    low_water: int = DEFAULT_LOW_WATER,
    max_chunk: int = DEFAULT_MAX_CHUNK,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
) -> AsyncIterator[SessionHandle]:
    """Open ``Control.Session`` on ``channel`` and serve ``attachables`` inside it.

    ``session_id`` is what ``SolveRequest.session`` and ``local.session`` refer to;
    ``shared_key`` scopes the daemon's reuse of previously transferred local dirs.
    ``address`` only labels errors; ``health_check_ms``: see :func:`session_headers`.
    ``high_water``/``low_water`` bound the bytes queued for the daemon (backpressure),
    ``max_chunk`` the size of one ``BytesMessage``. Raises
    :class:`~llblib_async.errors.DaemonUnreachableError` if the call can't be made.
    """
    health_probe = HealthService()  # only to list the methods, including health
    methods = sorted({*health_probe.__mapping__(), *_collect_mapping(attachables)})
    metadata = session_headers(
        session_id, methods=methods, shared_key=shared_key, name=name, health_check_ms=health_check_ms
    )
    async with channel.request(
        SESSION_METHOD,
        grpclib.const.Cardinality.STREAM_STREAM,
        _BytesMessage,
        _BytesMessage,
        metadata=metadata,
    ) as stream:
        try:
            await stream.send_request()
        except (OSError, StreamTerminatedError, ProtocolError) as e:
            raise DaemonUnreachableError(address, str(e) or type(e).__name__) from e
        async with serve_session(
            _GrpcStreamPipe(stream),
            attachables,
            session_id=session_id,
            label=address,
            high_water=high_water,
            low_water=low_water,
            max_chunk=max_chunk,
            close_timeout=close_timeout,
        ) as handle:
            yield handle


@contextlib.asynccontextmanager
async def serve_session_streams(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    attachables: Iterable[Attachable] = (),
    *,
    session_id: str = "",
    label: str = "session",
    **tuning: Any,
) -> AsyncIterator[SessionHandle]:
    """:func:`serve_session` over an asyncio stream pair (socket, Docker ``/session`` hijack)."""
    async with serve_session(
        StreamPipe(reader, writer), attachables, session_id=session_id, label=label, **tuning
    ) as handle:
        yield handle

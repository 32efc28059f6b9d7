"""The BuildKit session: a gRPC *server* running inside a byte stream.

BuildKit calls back into the client (local directories, exporter output, secrets,
auth...) through a session: the client opens ``Control.Session`` (a bidi stream of
``BytesMessage``), and inside the concatenated bytes of that stream the daemon speaks
HTTP/2 + gRPC as the *client* while we are the *server* (spec §2). Docker's
``/session`` endpoint is the same thing over a hijacked socket.

:func:`serve_session` runs the server over any :class:`~llblib_async._wire.pipes.BytePipe`:
one reader task feeds the bytes from the daemon to grpclib's HTTP/2 server protocol
(through the :class:`~llblib_async._wire.h2fast.FastReceiver`), one writer task sends
what the protocol wrote into the :class:`~.outbound.OutboundBuffer`, coalescing the
small writes of many handlers into few ``BytesMessage``\\ s. It yields a
:class:`~.handle.SessionHandle` and shuts down cleanly (handlers cancelled, queue
flushed, half-close, the daemon's EOF awaited). :mod:`.transports` opens the pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio
import grpclib.const
import grpclib.server
from grpclib.exceptions import GRPCError

from .._wire.h2fast import FastReceiver, use_fast_streams
from .._wire.pipes import BytePipe, StreamPipe
from ..attachables.attachable import Attachable
from ..errors import ConnectionLostError
from .grpc_server import collect_mapping, new_server_protocol
from .handle import SessionHandle
from .health import HealthService
from .outbound import OutboundBuffer

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HIGH_WATER",
    "DEFAULT_LOW_WATER",
    "DEFAULT_MAX_CHUNK",
    "serve_session",
    "serve_session_streams",
]

log = logging.getLogger("llblib_async.session")

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


class SessionServer:
    """Reader + writer tasks connecting a :class:`BytePipe` to grpclib's protocol."""

    def __init__(
        self,
        pipe: BytePipe,
        mapping: Mapping[str, grpclib.const.Handler],
        handle: SessionHandle,
        transport: OutboundBuffer,
        *,
        max_chunk: int,
        close_timeout: float,
    ) -> None:
        self._pipe = pipe
        self._handle = handle
        self._max_chunk = max_chunk
        self._close_timeout = close_timeout
        self._transport = transport
        self._protocol = new_server_protocol(mapping)
        self._transport.set_protocol(self._protocol)
        self._closing = False  # we started the shutdown (EOF is then expected)
        self._peer_failed = False
        self._protocol_lost = False
        self._reader_done = anyio.Event()
        self._reader_scope = anyio.CancelScope()
        self._receiver: FastReceiver | None = None  # from start()

    def start(self) -> None:
        # Writes our SETTINGS frame into the queue right away, as a server must.
        self._protocol.connection_made(self._transport)
        use_fast_streams(self._protocol.connection)
        self._receiver = FastReceiver(self._protocol, server=True)

    def _lose_protocol(self) -> None:
        """Tell grpclib the connection is gone: cancels running handlers, closes the transport."""
        if not self._protocol_lost:
            self._protocol_lost = True
            self._protocol.connection_lost(None)

    def _peer_gone(self, exc: BaseException) -> None:
        self._peer_failed = True
        self._handle.record_failure(exc)
        self._transport.abort()
        self._lose_protocol()
        self._handle.closed.set()

    def _failure(self, e: BaseException) -> ConnectionLostError:
        reason = f"{e.status.name}: {e.message}" if isinstance(e, GRPCError) else (str(e) or type(e).__name__)
        return ConnectionLostError(self._handle.label, reason)

    async def reader(self) -> None:
        receiver = self._receiver
        assert receiver is not None, "start() first"
        with self._reader_scope:
            try:
                while True:
                    data = await self._pipe.receive()
                    if data is None:
                        break
                    if not self._protocol_lost:
                        receiver.data_received(data)
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
        # A pipe that can send a message as a list of buffers joins them only once.
        send_parts: Callable[[list[bytes | memoryview]], Awaitable[None]] | None = getattr(
            self._pipe, "send_parts", None
        )
        try:
            while True:
                # Let the handlers that are ready run first: what they write joins
                # this BytesMessage, so many small packets (a tree of small files)
                # make few messages and socket writes instead of one each.
                await asyncio.sleep(0)
                parts = await self._transport.next_parts(self._max_chunk)
                if parts is None:
                    break
                if send_parts is not None:
                    await send_parts(parts)
                else:
                    await self._pipe.send(bytes(parts[0]) if len(parts) == 1 else b"".join(parts))
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
    :func:`.headers.session_headers`). On exit the handlers are cancelled, queued bytes are
    flushed, our side is half-closed and, after the daemon's end of stream (at most
    ``close_timeout`` s), the pipe is closed. No task outlives the block.
    """
    health_svc = HealthService()
    mapping = collect_mapping([health_svc, *attachables])
    outbound = OutboundBuffer(high_water=high_water, low_water=low_water, label=label)
    handle = SessionHandle(session_id, sorted(mapping), label, health_svc, outbound)
    server = SessionServer(pipe, mapping, handle, outbound, max_chunk=max_chunk, close_timeout=close_timeout)
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

"""Byte pipes: the full-duplex byte streams a BuildKit session's HTTP/2 connection travels in.

* :class:`BytePipe` -- the interface the session server (:mod:`llblib_async._tunnel`)
  reads and writes;
* :class:`GrpcStreamPipe` -- ``Control.Session``: every ``BytesMessage.data`` of the
  bidi call is a chunk of the stream (what plain buildkitd offers);
* :class:`StreamPipe` -- an asyncio reader/writer pair, e.g. the socket of Docker's
  ``/session`` hijack.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from grpclib.exceptions import ProtocolError

from .h2fast import FastStream, fast_stream
from .messages import BytesMessage, Parts

__all__ = ["BytePipe", "GrpcStreamPipe", "StreamPipe"]


class BytePipe(Protocol):
    """A full-duplex byte stream carrying the session's HTTP/2 connection."""

    async def receive(self) -> bytes | memoryview | None:
        """Next chunk from the daemon (bytes-like); ``None`` at a clean end of stream."""
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


class GrpcStreamPipe:
    """``Control.Session``: every ``BytesMessage.data`` is a chunk of the byte stream."""

    def __init__(self, stream: Any) -> None:
        # grpclib.client.Stream[BytesMessage, BytesMessage]; typed loosely because
        # grpclib's generic parameters don't line up with betterproto2's classes.
        self._stream = stream
        self._ended = False
        self._finished = False
        # The FastStream under the call, for the message-level fast paths: sends once
        # the request is out (it is before the pipe exists), receives after the first
        # message (grpclib's recv_message has then handled the response headers).
        self._send_fast: FastStream | None = None
        self._fast: FastStream | None = None

    async def receive(self) -> bytes | memoryview | None:
        fast = self._fast
        if fast is not None:
            with fast.wrapper or contextlib.nullcontext():  # grpclib's cancellation on loss
                payload = await fast.recv_message_data()
            if payload is not None:
                return BytesMessage.payload(payload)
        else:
            # The first message through grpclib, which handles the response headers.
            msg = await self._stream.recv_message()
            self._fast = fast_stream(self._stream)
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
        await self._stream.send_message(BytesMessage(data))

    async def send_parts(self, parts: list[bytes | memoryview]) -> None:
        """:meth:`send` of the concatenation of ``parts`` (joined once, by :class:`FastStream`)."""
        fast = self._send_fast = self._send_fast or fast_stream(self._stream)
        if fast is None:
            await self.send(b"".join(parts))
            return
        size = sum(len(p) for p in parts)
        head = BytesMessage.header(size)
        with fast.wrapper or contextlib.nullcontext():
            await fast.send_messages([Parts([head, *parts], len(head) + size)])

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

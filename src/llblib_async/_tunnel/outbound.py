"""The transport grpclib's session server writes into: a bounded queue with backpressure.

The session's HTTP/2 connection is not a socket we can hand to asyncio but a
:class:`~llblib_async._wire.pipes.BytePipe`; grpclib's server protocol needs an
``asyncio.Transport`` to write to. :class:`OutboundBuffer` is that transport: its
writes go to a queue drained by the session's one writer task. Above ``high_water``
queued bytes it pauses the protocol (grpclib then blocks every ``send_message`` on its
``write_ready`` event) and resumes below ``low_water``, so a fast sender can't buffer
unbounded memory when the daemon reads slowly. Inbound needs no such logic: grpclib
only acknowledges HTTP/2 DATA once a handler has consumed it, so the daemon can't send
more than the flow-control windows.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from typing import Any

__all__ = ["OutboundBuffer"]


class OutboundBuffer(asyncio.Transport):
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
        self._chunks: collections.deque[bytes | memoryview] = collections.deque()
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
        self._queued(len(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Queue several buffers; read-only views (of ``bytes``) are kept, not copied."""
        if self._closing:
            return
        n = 0
        for data in list_of_data:
            if isinstance(data, memoryview) and data.readonly:
                chunk: bytes | memoryview = data.cast("B")
            else:
                chunk = bytes(data)
            if chunk:
                self._chunks.append(chunk)
                n += len(chunk)
        if n:
            self._queued(n)

    def _queued(self, n: int) -> None:
        self._size += n
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
        parts = await self.next_parts(max_size)
        if parts is None:
            return None
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    async def next_parts(self, max_size: int) -> list[bytes | memoryview] | None:
        """Like :meth:`next_chunk`, as the queued buffers themselves (not joined)."""
        while not self._chunks:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        parts: list[bytes | memoryview] = []
        n = 0
        while self._chunks and n < max_size:
            chunk = self._chunks[0]
            room = max_size - n
            if len(chunk) > room:
                view = memoryview(chunk)  # (slices of bytes would be copies)
                parts.append(view[:room])
                self._chunks[0] = view[room:]
                n += room
                break
            parts.append(self._chunks.popleft())
            n += len(chunk)
        self._size -= n
        if self._paused and self._size <= self._low and self._protocol is not None:
            self._paused = False
            self.paused.clear()
            self._protocol.resume_writing()
        return parts

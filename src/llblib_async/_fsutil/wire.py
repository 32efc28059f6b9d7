"""fsutil packets on a gRPC stream: encoding helpers and the stream adapter.

Both directions of a diffcopy carry ``fsutil.types.Packet`` messages. The senders
encode DATA packets by hand (they are most of the traffic and their encoding is
trivial); everything else goes through the generated betterproto2 class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import anyio
from grpclib.const import Status

from .._pb.fsutil.types import Packet, PacketPacketType, Stat
from .._session import RawMessage

PT = PacketPacketType

#: Go's fsutil reads and sends file contents in 32 KiB packets.
DATA_CHUNK = 32 * 1024


class TransferError(Exception):
    """A diffcopy failed; ``message`` is what the peer (and the daemon's log) gets."""

    def __init__(self, message: str, status: Status = Status.UNKNOWN, *, send_err: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        #: whether the peer should still be told with an ERR packet (not if it told us)
        self.send_err = send_err


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_DATA_TYPE = b"\x08\x02"  # field 1 (type), varint PACKET_DATA=2


def encode_data(file_id: int, data: bytes | memoryview) -> bytes:
    """``bytes(Packet(type=PACKET_DATA, id=file_id, data=data))`` without the overhead."""
    parts: list[bytes | memoryview] = [_DATA_TYPE]
    if file_id:
        parts.append(b"\x18" + _varint(file_id))  # field 3 (ID), varint
    if len(data):
        parts.append(b"\x22" + _varint(len(data)))  # field 4 (data), length-delimited
        parts.append(data)
    return b"".join(parts)


def encode_stat(stat: Stat) -> bytes:
    return bytes(Packet(type=PT.PACKET_STAT, stat=stat))


#: The empty STAT that ends the walk (an empty message: Stat must be *absent*).
END_OF_WALK = bytes(Packet(type=PT.PACKET_STAT))
FIN = bytes(Packet(type=PT.PACKET_FIN))


def encode_req(file_id: int) -> bytes:
    return bytes(Packet(type=PT.PACKET_REQ, id=file_id))


def encode_err(message: str) -> bytes:
    return bytes(Packet(type=PT.PACKET_ERR, data=message.encode("utf-8", "replace")))


def decode(data: bytes) -> Packet:
    return Packet.parse(data)


class PacketConn(Protocol):
    """One diffcopy stream: raw serialized packets in both directions."""

    async def recv(self) -> bytes | None:
        """Next packet (serialized); ``None`` when the peer ended its side."""
        ...

    async def send(self, data: bytes) -> None:
        """Send one serialized packet; safe to call from several tasks."""
        ...


class GrpcPacketConn:
    """A grpclib stream (registered with :class:`RawMessage`) as a :class:`PacketConn`.

    Sends are serialized with a lock: two concurrent ``send_message`` calls on one
    grpclib stream can interleave the frames of two messages once the HTTP/2
    flow-control window runs out (Go guards its streams with a mutex too).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = anyio.Lock()

    async def recv(self) -> bytes | None:
        msg = await self._stream.recv_message()
        if msg is None:
            return None
        data: bytes = msg.data
        return data

    async def send(self, data: bytes) -> None:
        async with self._lock:
            await self._stream.send_message(RawMessage(data))


class FirstFailure:
    """Run sibling tasks so that the first failure cancels the others and is kept.

    anyio task groups report failures as exception groups; the protocol code wants
    one plain error (the first -- later ones are usually consequences).
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def wrap(
        self, scope: anyio.CancelScope, fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            try:
                await fn(*args)
            except Exception as e:
                if self.error is None:
                    self.error = e
                scope.cancel()

        return run

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

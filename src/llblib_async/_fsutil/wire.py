"""fsutil packets on a gRPC stream: encoding helpers and the stream adapter.

Both directions of a diffcopy carry ``fsutil.types.Packet`` messages. The senders
encode DATA packets by hand (they are most of the traffic and their encoding is
trivial); everything else goes through the generated betterproto2 class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import anyio
from grpclib.const import Status

from .._pb.fsutil.types import PacketPacketType, Stat
from .._wire.h2fast import fast_stream
from .._wire.messages import RawMessage
from .._wire.protobuf import read_varint, skip_field, varint

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


# The codec below is hand-written, on llblib_async._wire.protobuf's varint: betterproto2
# takes 50-200 us to (de)serialize one packet, which dominated transfers of many small
# files (several packets per file on each side). The schemas are tiny (fsutil
# types/wire.proto, types/stat.proto) and the unit tests check the codec against the
# generated classes both ways.


def _len_field(tag: int, payload: bytes | memoryview) -> list[bytes | memoryview]:
    return [bytes((tag,)), varint(len(payload)), payload]


_DATA_TYPE = b"\x08\x02"  # field 1 (type), varint PACKET_DATA=2


def encode_data(file_id: int, data: bytes | memoryview) -> bytes:
    """``bytes(Packet(type=PACKET_DATA, id=file_id, data=data))``."""
    parts: list[bytes | memoryview] = [_DATA_TYPE]
    if file_id:
        parts.append(b"\x18" + varint(file_id))  # field 3 (ID), varint
    if len(data):
        parts.append(b"\x22" + varint(len(data)))  # field 4 (data), length-delimited
        parts.append(data)
    return b"".join(parts)


def encode_stat_message(st: Stat) -> bytes:
    """``bytes(st)`` for an fsutil ``Stat`` (proto3: default values are left out)."""
    parts: list[bytes | memoryview] = []
    if st.path:
        parts += _len_field(0x0A, st.path.encode("utf-8", "surrogateescape"))
    for tag, value in (
        (0x10, st.mode),
        (0x18, st.uid),
        (0x20, st.gid),
        (0x28, st.size),
        (0x30, st.mod_time),
    ):
        if value:
            parts += (bytes((tag,)), varint(value))
    if st.linkname:
        parts += _len_field(0x3A, st.linkname.encode("utf-8", "surrogateescape"))
    if st.devmajor:
        parts += (b"\x40", varint(st.devmajor))
    if st.devminor:
        parts += (b"\x48", varint(st.devminor))
    for name, xattr in st.xattrs.items():
        k = name.encode("utf-8", "surrogateescape")
        entry = b"".join([b"\x0a", varint(len(k)), k, b"\x12", varint(len(xattr)), xattr])
        parts += _len_field(0x52, entry)
    return b"".join(parts)


def encode_stat(stat: Stat) -> bytes:
    """A STAT packet (type 0 is the default, so only the stat field is written)."""
    return b"".join(_len_field(0x12, encode_stat_message(stat)))


#: The empty STAT that ends the walk (an empty message: Stat must be *absent*).
END_OF_WALK = b""
FIN = b"\x08\x03"


def encode_req(file_id: int) -> bytes:
    return b"\x08\x01" + (b"\x18" + varint(file_id) if file_id else b"")


def encode_err(message: str) -> bytes:
    return b"".join([b"\x08\x04", *_len_field(0x22, message.encode("utf-8", "replace"))])


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _str(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def decode_stat(buf: bytes) -> Stat:
    st = Stat()
    pos, end = 0, len(buf)
    while pos < end:
        tag = buf[pos]  # (one-byte varints inline: every tag, most values)
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(buf, pos)
        field, wt = tag >> 3, tag & 7
        if wt == 0:
            v = buf[pos]
            if v < 0x80:
                pos += 1
            else:
                v, pos = read_varint(buf, pos)
            if field == 2:
                st.mode = v & 0xFFFFFFFF
            elif field == 3:
                st.uid = v & 0xFFFFFFFF
            elif field == 4:
                st.gid = v & 0xFFFFFFFF
            elif field == 5:
                st.size = _int64(v)
            elif field == 6:
                st.mod_time = _int64(v)
            elif field == 8:
                st.devmajor = _int64(v)
            elif field == 9:
                st.devminor = _int64(v)
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            chunk = buf[pos : pos + n]
            if len(chunk) != n:
                raise ValueError("truncated Stat")
            pos += n
            if field == 1:
                st.path = _str(chunk)
            elif field == 7:
                st.linkname = _str(chunk)
            elif field == 10:
                key, value = "", b""
                p, e = 0, len(chunk)
                while p < e:
                    t, p = read_varint(chunk, p)
                    if t & 7 != 2:
                        p = skip_field(chunk, p, t & 7)
                        continue
                    m, p = read_varint(chunk, p)
                    if t >> 3 == 1:
                        key = _str(chunk[p : p + m])
                    elif t >> 3 == 2:
                        value = chunk[p : p + m]
                    p += m
                st.xattrs[key] = value
        else:
            pos = skip_field(buf, pos, wt)
    return st


#: DATA payloads from this size on are decoded as views of the message.
_DATA_VIEW_MIN = 4096


class RawPacket:
    """A decoded fsutil ``Packet`` (the fields the protocol code reads).

    ``data`` is ``bytes`` or, for larger DATA payloads, a read-only ``memoryview``.
    """

    __slots__ = ("data", "id", "stat", "type")

    def __init__(self, type: int, stat: Stat | None, id: int, data: bytes | memoryview) -> None:
        self.type = type
        self.stat = stat
        self.id = id
        self.data = data


def decode(buf: bytes) -> RawPacket:
    """Parse a serialized ``Packet`` (unknown fields are skipped, like protobuf does).

    Raises :class:`TransferError` for malformed input.
    """
    ptype, stat, file_id = 0, None, 0
    data: bytes | memoryview = b""
    pos, end = 0, len(buf)
    try:
        while pos < end:
            tag = buf[pos]  # (one-byte varints inline)
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = read_varint(buf, pos)
            field, wt = tag >> 3, tag & 7
            if wt == 0:
                v, pos = read_varint(buf, pos)
                if field == 1:
                    ptype = v
                elif field == 3:
                    file_id = v & 0xFFFFFFFF
            elif wt == 2:
                n, pos = read_varint(buf, pos)
                if pos + n > end:
                    raise ValueError("truncated Packet")
                if field == 2:
                    stat = decode_stat(buf[pos : pos + n])
                elif field == 4:
                    # file contents: a view of the message (not copied) unless small
                    big = ptype == PT.PACKET_DATA and n >= _DATA_VIEW_MIN
                    data = memoryview(buf)[pos : pos + n] if big else buf[pos : pos + n]
                pos += n
            else:
                pos = skip_field(buf, pos, wt)
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise TransferError(f"malformed packet: {e}", Status.INVALID_ARGUMENT) from e
    return RawPacket(ptype, stat, file_id, data)


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
        self._lock = asyncio.Lock()
        # On the session's own connections, packets skip grpclib's per-message
        # Stream.send_message/recv_message (_FastStream's message methods).
        self._fast = fast_stream(stream)
        self._headers_sent = False

    async def recv(self) -> bytes | None:
        if self._fast is not None:
            return await self._fast.recv_message_data()
        msg = await self._stream.recv_message()
        if msg is None:
            return None
        data: bytes = msg.data
        return data

    async def send(self, data: bytes) -> None:
        await self.send_many((data,))

    async def send_many(self, packets: Sequence[bytes]) -> None:
        """Send packets back to back (on our connections: one write, frames shared)."""
        # asyncio's Lock, not anyio's: uncontended it takes no scheduling checkpoint
        # (nor anyio's bookkeeping), so a send that needs no waiting doesn't yield to
        # the event loop, and the packets a task sends in a row reach the session
        # writer together and share one BytesMessage instead of taking one each.
        await self._lock.acquire()
        try:
            fast = self._fast
            if fast is None:
                for data in packets:
                    await self._stream.send_message(RawMessage(data))
                return
            if not self._headers_sent and packets:
                # the first one through grpclib, which sends the response headers first
                await self._stream.send_message(RawMessage(packets[0]))
                self._headers_sent = True
                packets = packets[1:]
            if packets:
                await fast.send_messages(packets)
        finally:
            self._lock.release()


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

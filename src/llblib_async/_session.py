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

grpclib private API is used by :func:`_new_server_protocol` and by the HTTP/2 hot
paths (``_FastStream`` and friends, see the comment above them), which also rely on
h2 internals.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import contextlib
import logging
import struct
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import anyio
import grpclib.const
import grpclib.protocol
import grpclib.server
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.protocol import H2Protocol
from h2.connection import ConnectionInputs, ConnectionState
from h2.stream import H2Stream, H2StreamStateMachine, StreamInputs, StreamState

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


class _Parts:
    """A byte string kept as a list of immutable buffers, joined only once, when sent.

    What :meth:`_FastStream.send_messages` frames, so a payload isn't copied into
    every layer's framing (an fsutil packet into its gRPC message, that into HTTP/2
    frames, those into the session's ``BytesMessage``, and again). Everything in
    ``parts`` must be ``bytes`` or read-only views of it.
    """

    __slots__ = ("parts", "size")

    def __init__(self, parts: list[bytes | memoryview], size: int) -> None:
        self.parts = parts
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


def _fast_stream(stream: Any) -> _FastStream | None:
    """The :class:`_FastStream` under a grpclib client or server ``Stream``, if it has one.

    (grpclib keeps it in the private ``_stream``, set once the call has started.)
    """
    inner = getattr(stream, "_stream", None)
    return inner if isinstance(inner, _FastStream) else None


_GRPC_PREFIX = struct.Struct(">BL")  # compressed flag, length


def _grpc_prefix(size: int) -> bytes:
    """The 5-byte gRPC message prefix: not compressed, big-endian length."""
    return _GRPC_PREFIX.pack(0, size)


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

    @classmethod
    def payload(cls, buf: bytes) -> bytes | memoryview:
        """``FromString(buf).data``, as a zero-copy view in the usual case."""
        n = len(buf)
        if n > 1 and buf[0] == 0x0A:
            length, pos = _read_varint(buf, 1)
            if pos + length == n:
                return memoryview(buf)[pos:]
        return cls.FromString(buf).data

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


# --------------------------------------------------------------------------- HTTP/2 hot paths
#
# Every byte of an upload or download crosses pure-Python HTTP/2 twice: the outer
# connection to the daemon and the session's inner one, both in frames of at most
# 16 KiB (grpc-go's limit), so a GiB is 2 x 65,536 frames, and a tree of small files
# is several gRPC messages per file on each. h2/hyperframe's per-frame and grpclib's
# per-message costs dominated the transfers (profiles: benchmarks/bench_transfer.py);
# on our own connections -- the channel to the daemon (see _transport._instrumented)
# and the session's server -- they are cut here, without changing what goes on the
# wire or any flow-control decision:
#
# * _install_cheap_frame_repr: h2's eager repr of every received frame;
# * _FastStream: DATA frames serialized by hand, whole windows per write, payloads
#   not copied (_Parts); messages sent and received without grpclib's per-message
#   machinery (send_messages, recv_message_data);
# * _FastBuffer: the received DATA of a stream, acknowledged in batches;
# * _FastReceiver: DATA, WINDOW_UPDATE and PING frames parsed and accounted without
#   h2's frame objects, everything else through h2.
#
# They use h2/grpclib internals (grpclib is pinned; h2's are checked before use, see
# _h2_internals_ok) and are covered by tests/test_session_fastpath.py, which compares
# them with the stock code paths.


def _prefix_raw_data_repr(data: Any) -> str:
    """Same text as ``hyperframe.frame._raw_data_repr``, from a 10-byte prefix."""
    if not data:
        return "None"
    r = binascii.hexlify(data[:10]).decode("ascii")
    if len(data) > 10:  # the original hexlifies everything, then keeps 20 hex digits + "..."
        r += "..."
    return "<hex:" + r + ">"


def _install_cheap_frame_repr() -> None:
    """Make hyperframe's ``repr(DataFrame)`` cost O(1) instead of O(payload).

    ``H2Connection._receive_frame`` evaluates ``repr(frame)`` for a trace log
    *before* the logger (a no-op by default) can discard it, and a DATA frame's
    repr hexlifies its whole payload to keep 20 hex digits: ~40 us per 16 KiB frame,
    a quarter of a download's CPU. The replacement returns the identical string from
    the first 10 bytes (checked on probes before it is installed, else skipped), so
    the patch is invisible to anything but a profiler, for every user of hyperframe
    in the process.
    """
    try:
        import hyperframe.frame as hf
    except ImportError:  # pragma: no cover - h2 always brings hyperframe
        return
    original = getattr(hf, "_raw_data_repr", None)
    if original is None or original is _prefix_raw_data_repr:
        return
    try:
        probes: list[Any] = [None, b"", b"\x00", bytes(range(10)), bytes(range(11)), bytes(range(200))]
        if any(original(p) != _prefix_raw_data_repr(p) for p in probes):
            return
    except Exception:  # pragma: no cover - an unexpected hyperframe: leave it alone
        return
    hf._raw_data_repr = _prefix_raw_data_repr


_install_cheap_frame_repr()

_FRAME_HEADER = struct.Struct(">HBBBL")  # 24-bit length, type, flags, stream id
#: Most bytes of DATA one ``writelines`` carries: backpressure (``write_ready``) is
#: checked between writes, so the transport overshoots its high-water mark by at
#: most this much (grpclib's frame-by-frame path: one frame).
_WRITE_MAX = 64 * 1024
_DATA_FRAME = 0x0


class _FastStream(grpclib.protocol.Stream):
    """grpclib's ``Stream`` with a DATA path that serializes frames by hand.

    ``Stream.send_data`` hands h2 one frame at a time: h2 builds a ``DataFrame``,
    runs both state machines, serializes it through three joins and a ``bytearray``,
    and grpclib writes each frame to the transport on its own -- ~17 us and ~6 copies
    per 16 KiB frame, one ``send()`` syscall each on a socket. Here each stretch the
    flow-control window allows is checked and accounted in h2 exactly as
    ``H2Connection.send_data`` does for each frame (state machines, both outbound
    windows, the frame size limit), then handed to the transport in one
    ``writelines``: h2's pending output first (control frames keep their order),
    then the DATA frames -- headers and zero-copy slices of the payload, which may be
    a :class:`_Parts`. (The socket transport joins them once; :class:`_OutboundBuffer`
    keeps the slices until the session writer joins its message.)

    Waiting is grpclib's: ``connection.write_ready`` (transport backpressure) and
    ``window_updated`` when the window is exhausted. A frame that must end the stream,
    and the degenerate empty write, go through the original code.
    """

    def init_stream(self, stream_id: int, connection: grpclib.protocol.Connection) -> None:
        super().init_stream(stream_id, connection)
        self.buffer = _FastBuffer(self.buffer._ack_callback)  # type: ignore[assignment]

    # Message level, for the session's own hot loops (the byte pipe, fsutil packets),
    # which skip grpclib's per-message ``Stream.send_message``/``recv_message``
    # (codec, event dispatch, statistics) once the call is under way.

    async def recv_message_data(self) -> bytes | None:
        """The next gRPC message's payload; ``None`` at the end of the stream."""
        buffer = self.buffer
        assert isinstance(buffer, _FastBuffer)
        return await buffer.read_message()

    async def send_messages(self, payloads: Iterable[bytes | _Parts]) -> None:
        """Send gRPC messages back to back (one ``send_data``: frames shared, not copied)."""
        parts: list[bytes | memoryview] = []
        size = 0
        for payload in payloads:
            n = len(payload)
            parts.append(_grpc_prefix(n))
            if isinstance(payload, _Parts):
                parts.extend(payload.parts)
            else:
                parts.append(payload)
            size += 5 + n
        await self.send_data(_Parts(parts, size))

    async def send_data(self, data: bytes | memoryview | _Parts, end_stream: bool = False) -> None:
        if end_stream or not data:
            await super().send_data(bytes(data), end_stream=end_stream)
            return
        assert self.id is not None
        stream_id = self.id
        h2c = self._h2_connection
        write_ready = self.connection.write_ready
        parts: collections.deque[bytes | memoryview] = collections.deque()
        left = 0
        for part in data.parts if isinstance(data, _Parts) else (data,):
            if not isinstance(part, bytes):
                view = memoryview(part)
                # a caller's bytearray could change before it is sent
                part = view.cast("B") if view.readonly else view.tobytes()
            if part:
                parts.append(part)
                left += len(part)
        checked = False  # the state machines, checked again after every wait
        while left:
            if not write_ready.is_set():
                await write_ready.wait()
                checked = False
            window = h2c.local_flow_control_window(stream_id)  # raises if the stream is gone
            if not window > 0:  # may be negative after a SETTINGS change
                self.window_updated.clear()
                await self.window_updated.wait()
                checked = False
                continue
            h2_stream = h2c.streams[stream_id]
            if not checked:
                h2c.state_machine.process_input(ConnectionInputs.SEND_DATA)
                h2_stream.state_machine.process_input(StreamInputs.SEND_DATA)
                checked = True
            max_frame = h2c.max_outbound_frame_size
            n = min(window, left, _WRITE_MAX)
            pending = h2c.data_to_send()
            out: list[bytes | memoryview] = [pending] if pending else []
            full_header = b""
            todo = n
            while todo:
                size = min(max_frame, todo)
                if size == max_frame and full_header:
                    out.append(full_header)
                else:
                    header = _FRAME_HEADER.pack(size >> 8, size & 0xFF, _DATA_FRAME, 0, stream_id)
                    if size == max_frame:
                        full_header = header
                    out.append(header)
                todo -= size
                while size:  # the frame's payload: whole parts, or a slice of the first
                    part = parts[0]
                    if len(part) <= size:
                        out.append(parts.popleft())
                        size -= len(part)
                    else:
                        view = memoryview(part)
                        out.append(view[:size])
                        parts[0] = view[size:]
                        size = 0
            h2_stream.outbound_flow_control_window -= n
            h2c.outbound_flow_control_window -= n
            left -= n
            self._transport.writelines(out)
            self.data_sent += n
            self.connection.data_sent += n
            self.connection.data_send_process()


#: Consumed bytes acknowledged (to h2, which decides on WINDOW_UPDATEs) in one call.
_ACK_BATCH = 256 * 1024


class _FastBuffer:
    """grpclib's ``protocol.Buffer`` -- a stream's received DATA -- with fewer calls per frame.

    Same interface and flow-control rule: data is acknowledged to h2 (which returns
    window to the peer) only once a reader has taken it, so a slow reader holds the
    peer back. Differences: a deque and one ``Event`` instead of an ``asyncio.Queue``
    per frame; acknowledgements of consecutive frames are summed and made once per
    :data:`_ACK_BATCH` bytes or whenever the reader has taken everything received
    (so the peer never waits on bytes we consumed); a single-frame read is not copied;
    an empty DATA frame is skipped instead of ending the stream (grpclib's queue uses
    an empty entry as its end marker).
    """

    __slots__ = ("_ack_callback", "_ack_pending", "_acked", "_acked_size", "_eof", "_frames", "_ready")

    def __init__(self, ack_callback: Callable[[int], None]) -> None:
        self._ack_callback = ack_callback
        self._frames: collections.deque[tuple[bytes | memoryview, int]] = collections.deque()
        self._ready = asyncio.Event()
        self._eof = False
        self._acked: collections.deque[bytes | memoryview] = collections.deque()
        self._acked_size = 0
        self._ack_pending = 0

    def add(self, data: bytes | memoryview, ack_size: int) -> None:
        if len(data) or ack_size:
            self._frames.append((data, ack_size))
            self._ready.set()

    def eof(self) -> None:
        self._eof = True
        self._ready.set()

    async def read(self, size: int) -> bytes:
        assert size >= 0, "Size can not be negative"
        if size == 0:
            return b""
        frames = self._frames
        while self._acked_size < size:
            if frames:
                data, ack_size = frames.popleft()
                if len(data):
                    self._acked.append(data)
                    self._acked_size += len(data)
                self._ack_pending += ack_size
            elif self._eof:
                break
            else:
                self._flush_acks()
                self._ready.clear()
                await self._ready.wait()
        if self._ack_pending >= _ACK_BATCH or not frames:
            self._flush_acks()
        if self._acked_size == 0 and self._eof:
            return b""
        if self._acked_size < size:
            raise AssertionError("Received less data than expected")
        acked = self._acked
        first = acked[0]
        if len(first) == size:
            acked.popleft()
            self._acked_size -= size
            return first if isinstance(first, bytes) else first.tobytes()
        chunks: list[bytes | memoryview] = []
        got = 0
        while got < size:
            chunk = acked[0]
            if got + len(chunk) <= size:
                chunks.append(acked.popleft())
                got += len(chunk)
            else:
                view = memoryview(chunk)
                chunks.append(view[: size - got])
                acked[0] = view[size - got :]
                got = size
        self._acked_size -= size
        return b"".join(chunks)

    async def read_message(self) -> bytes | None:
        """A length-prefixed gRPC message (grpclib's ``recv_message`` without the codec)."""
        frames = self._frames
        if not self._acked and frames:
            # the common case of small messages: one frame holds exactly one message
            data, ack_size = frames[0]
            n = len(data)
            if n >= 5 and _GRPC_PREFIX.unpack_from(data) == (0, n - 5):
                frames.popleft()
                self._ack_pending += ack_size
                if self._ack_pending >= _ACK_BATCH or not frames:
                    self._flush_acks()
                return bytes(data[5:])
        meta = await self.read(5)
        if not meta:
            return None
        if meta[0]:
            raise NotImplementedError("Compression not implemented")
        return await self.read(int.from_bytes(meta[1:5], "big"))

    def _flush_acks(self) -> None:
        if self._ack_pending:
            n, self._ack_pending = self._ack_pending, 0
            self._ack_callback(n)

    def unacked_size(self) -> int:
        """Bytes received but not acknowledged (grpclib returns them when a stream is released)."""
        n = self._ack_pending + sum(ack for _, ack in self._frames)
        self._ack_pending = 0
        self._frames.clear()
        return n


def _use_fast_streams(connection: grpclib.protocol.Connection) -> None:
    """Make the streams of a grpclib connection :class:`_FastStream` (call after ``connection_made``).

    Left alone when this h2 lacks the internals the fast paths account in.
    """
    if not _h2_internals_ok(connection._connection):
        return

    def create_stream(*, stream_id: int | None = None, wrapper: Any = None) -> grpclib.protocol.Stream:
        return _FastStream(
            connection, connection._connection, connection._transport, stream_id=stream_id, wrapper=wrapper
        )

    connection.create_stream = create_stream  # type: ignore[method-assign]


_HEADERS_FRAME, _PUSH_PROMISE_FRAME, _PING_FRAME = 0x1, 0x5, 0x6
_WINDOW_UPDATE_FRAME, _CONTINUATION_FRAME = 0x8, 0x9
_FAST_TYPES = frozenset({_DATA_FRAME, _WINDOW_UPDATE_FRAME, _PING_FRAME})
_END_HEADERS = 0x4
_ACK = 0x1
_PING_ACK_HEADER = _FRAME_HEADER.pack(0, 8, _PING_FRAME, _ACK, 0)
_MAX_WINDOW = 2**31 - 1
_PREFACE_LEN = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", sent by the client first
_CONN_OPEN = frozenset({ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN})
_STREAM_RECEIVING = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL})
_STREAM_WINDOWED = _STREAM_RECEIVING | {StreamState.HALF_CLOSED_REMOTE}


class _Event:
    """What grpclib's ``EventsProcessor`` reads of h2's WINDOW_UPDATE/PING events.

    h2's event classes are keyword-only dataclasses (h2 >= 4.2; plain classes
    before) and cost more to build than everything else a fast frame needs.
    """

    __slots__ = ("delta", "ping_data", "stream_id")
    delta: int
    ping_data: bytes

    def __init__(self, stream_id: int = 0) -> None:
        self.stream_id = stream_id


class _FastReceiver:
    """The inbound side of an ``H2Protocol``: the frequent frames skip h2's frame objects.

    h2 turns each received frame into a hyperframe object (flags set, a DATA body
    copied twice and repr'd for a trace log), runs it through the state machines and
    flow-control managers and returns events: ~35 us a 16 KiB DATA frame, twice per
    frame of a download, and as much for each of the PINGs and WINDOW_UPDATEs grpc-go
    sends in reply to small messages. This splits the byte stream into frames itself
    and handles three kinds where h2 would accept them without complaint:

    * DATA without flags (no END_STREAM, no padding) on a stream grpclib knows, with
      connection and stream open for receiving, headers seen, no header block in
      progress, no content-length to check, within both receive windows: accounted
      as ``H2Connection._receive_data_frame`` would (both inbound windows, the
      stream's received length), the payload a zero-copy slice of what was received;
    * WINDOW_UPDATE with a valid increment that keeps the window valid, on the
      connection or a stream that takes updates: the outbound window grows;
    * PING on stream 0: answered with the same data (ACK) through h2's output buffer.

    In these cases the state machines would not change state; grpclib's
    ``EventsProcessor`` then gets what h2's event would have told it. Every other
    frame (and the client preface) goes, unchanged and in order, through the
    protocol's own ``data_received``, so h2 still sees and judges everything else --
    including any of these three it would reject. Only complete frames are passed
    on; an oversized frame header switches to passing everything through (h2 then
    fails the connection as before), and so does an h2 without the internals used.
    """

    def __init__(
        self, protocol: H2Protocol, *, server: bool, deliver: Callable[[bytes], None] | None = None
    ) -> None:
        # deliver: the protocol's own data_received (if the instance attribute was wrapped)
        self._deliver = deliver if deliver is not None else protocol.data_received
        self._h2 = protocol.connection._connection
        self._processor = protocol.processor
        self._preface = _PREFACE_LEN if server else 0
        self._partial = b""
        self._in_header_block = False
        self._flush = protocol.connection.flush
        self._flush_needed = False
        self._passthrough = not _h2_internals_ok(self._h2)

    def data_received(self, data: bytes | memoryview) -> None:
        if self._passthrough:
            self._deliver(bytes(data))
            return
        if self._preface:
            head = bytes(data[: self._preface])
            self._preface -= len(head)
            self._deliver(head)
            data = data[len(head) :]
        view = memoryview(data)
        pos, n = 0, len(view)
        if self._partial and n:
            # Complete the frame that straddles the previous chunk (<= one frame copied).
            partial = self._partial
            if len(partial) < 9:
                pos = min(9 - len(partial), n)
                partial += bytes(view[:pos])
                if len(partial) < 9:
                    self._partial = partial
                    return
            length = int.from_bytes(partial[:3], "big")
            if length > self._h2.max_inbound_frame_size:
                self._give_up(partial + bytes(view[pos:]))
                return
            need = 9 + length - len(partial)
            if n - pos < need:
                self._partial = partial + bytes(view[pos:])
                return
            frame = memoryview(partial + bytes(view[pos : pos + need]))
            pos += need
            self._partial = b""
            self._frames(frame, 0, len(frame))
        if pos < n and not self._passthrough:
            pos = self._frames(view, pos, n)
            if pos < n:
                self._partial = bytes(view[pos:])
        if self._flush_needed:  # PING acks queued in h2, as h2 itself would have
            self._flush_needed = False
            self._flush()

    def _give_up(self, rest: bytes | memoryview) -> None:
        """Pass everything from here on to h2 unparsed."""
        self._passthrough = True
        self._partial = b""
        self._deliver(bytes(rest))

    def _deliver_run(self, run: memoryview) -> bool:
        """Give h2 a run of complete frames; False once that failed the connection."""
        self._deliver(bytes(run))
        if self._h2.state_machine.state is ConnectionState.CLOSED:
            # h2 raised (grpclib closed the protocol): like h2 itself, ignore the rest of
            # this chunk; what follows goes to h2 unparsed.
            self._passthrough = True
            self._partial = b""
            return False
        return True

    def _frames(self, view: memoryview, pos: int, end: int) -> int:
        """Handle the complete frames in ``view[pos:end]``; returns where the rest starts."""
        h2c = self._h2
        unpack = _FRAME_HEADER.unpack_from
        run_start = -1  # start of a run of frames for h2
        while end - pos >= 9:
            high, low, ftype, flags, stream_id = unpack(view, pos)
            length = (high << 8) | low
            if length > h2c.max_inbound_frame_size:
                if run_start >= 0 and not self._deliver_run(view[run_start:pos]):
                    return end
                self._give_up(view[pos:end])
                return end
            frame_end = pos + 9 + length
            if frame_end > end:
                break
            if ftype in _FAST_TYPES and not self._in_header_block:
                # h2 first judges the frames before this one, then this one is checked
                if run_start >= 0:
                    if not self._deliver_run(view[run_start:pos]):
                        return end
                    run_start = -1
                if self._fast_frame(ftype, flags, stream_id & 0x7FFFFFFF, view, pos + 9, length):
                    pos = frame_end
                    continue
            elif ftype in (_HEADERS_FRAME, _PUSH_PROMISE_FRAME, _CONTINUATION_FRAME):
                self._in_header_block = not flags & _END_HEADERS
            if run_start < 0:
                run_start = pos
            pos = frame_end
        if run_start >= 0 and not self._deliver_run(view[run_start:pos]):
            return end
        return pos

    def _fast_frame(
        self, ftype: int, flags: int, stream_id: int, view: memoryview, start: int, length: int
    ) -> bool:
        """Handle a DATA, WINDOW_UPDATE or PING frame as h2 would; False: leave it to h2."""
        h2c = self._h2
        if h2c.state_machine.state not in _CONN_OPEN:
            return False
        processor = self._processor
        if ftype == _DATA_FRAME:
            if flags:
                return False
            grpc_stream = self._accept_data(stream_id, length)
            if grpc_stream is None:
                return False
            # grpclib's EventsProcessor.process_data_received, for a known stream
            grpc_stream.buffer.add(view[start : start + length], length)  # type: ignore[arg-type]
            grpc_stream.data_received += length
            connection = processor.connection
            connection.data_received += length
            connection.last_data_received = time.monotonic()
            return True
        event = _Event(stream_id)
        if ftype == _WINDOW_UPDATE_FRAME:
            # hyperframe: 4 bytes, increment 1..2**31-1; h2: the sum must stay a valid
            # window, the stream must be one that takes updates (else h2 decides).
            if length != 4:
                return False
            increment = int.from_bytes(view[start : start + 4], "big") & 0x7FFFFFFF
            if not increment:
                return False
            if stream_id:
                stream = h2c.streams.get(stream_id)
                if stream is None or stream.state_machine.state not in _STREAM_WINDOWED:
                    return False
                if stream.outbound_flow_control_window + increment > _MAX_WINDOW:
                    return False
                stream.outbound_flow_control_window += increment
            else:
                if h2c.outbound_flow_control_window + increment > _MAX_WINDOW:
                    return False
                h2c.outbound_flow_control_window += increment
            event.delta = increment
            processor.process_window_updated(event)  # type: ignore[arg-type]
        else:  # PING: 8 bytes on stream 0; h2 answers one without ACK with the same data
            if length != 8 or stream_id:
                return False
            event.ping_data = bytes(view[start : start + 8])
            if flags & _ACK:
                processor.process_ping_ack_received(event)  # type: ignore[arg-type]
            else:
                h2c._data_to_send += _PING_ACK_HEADER + event.ping_data
                self._flush_needed = True
                processor.process_ping_received(event)  # type: ignore[arg-type]
        return True

    def _accept_data(self, stream_id: int, length: int) -> grpclib.protocol.Stream | None:
        """Account a flagless DATA frame in h2 if h2 would accept it without events of its own.

        Returns grpclib's stream for it, or ``None`` to leave the frame to h2.
        """
        h2c = self._h2
        stream = h2c.streams.get(stream_id)
        grpc_stream = self._processor.streams.get(stream_id)
        if stream is None or grpc_stream is None:
            return None
        conn_window = h2c._inbound_flow_control_window_manager
        window = stream._inbound_window_manager
        machine = stream.state_machine
        if not (
            h2c.state_machine.state in _CONN_OPEN
            and machine.state in _STREAM_RECEIVING
            and machine.headers_received
            and stream._expected_content_length is None
            and length <= conn_window.current_window_size
            and length <= window.current_window_size
        ):
            return None
        conn_window.window_consumed(length)
        window.window_consumed(length)
        stream._actual_content_length += length
        return grpc_stream


def _h2_internals_ok(h2c: Any) -> bool:
    """Whether this h2 has the internals :class:`_FastReceiver` accounts in (else: pass through)."""
    try:
        return (
            hasattr(h2c, "_inbound_flow_control_window_manager")
            and isinstance(getattr(h2c, "_data_to_send", None), bytearray)
            and hasattr(h2c.state_machine, "state")
            and isinstance(h2c.streams, dict)
            and all(
                a in H2Stream.__init__.__code__.co_names
                for a in ("_inbound_window_manager", "_expected_content_length", "_actual_content_length")
            )
            and "headers_received" in H2StreamStateMachine.__init__.__code__.co_names
        )
    except Exception:  # pragma: no cover
        return False


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


class _GrpcStreamPipe:
    """``Control.Session``: every ``BytesMessage.data`` is a chunk of the byte stream."""

    def __init__(self, stream: Any) -> None:
        # grpclib.client.Stream[BytesMessage, BytesMessage]; typed loosely because
        # grpclib's generic parameters don't line up with betterproto2's classes.
        self._stream = stream
        self._ended = False
        self._finished = False
        # The _FastStream under the call, for the message-level fast paths: sends once
        # the request is out (it is before the pipe exists), receives after the first
        # message (grpclib's recv_message has then handled the response headers).
        self._send_fast: _FastStream | None = None
        self._fast: _FastStream | None = None

    async def receive(self) -> bytes | memoryview | None:
        fast = self._fast
        if fast is not None:
            with fast.wrapper or contextlib.nullcontext():  # grpclib's cancellation on loss
                payload = await fast.recv_message_data()
            if payload is not None:
                return _BytesMessage.payload(payload)
        else:
            # The first message through grpclib, which handles the response headers.
            msg = await self._stream.recv_message()
            self._fast = _fast_stream(self._stream)
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

    async def send_parts(self, parts: list[bytes | memoryview]) -> None:
        """:meth:`send` of the concatenation of ``parts`` (joined once, by :class:`_FastStream`)."""
        fast = self._send_fast = self._send_fast or _fast_stream(self._stream)
        if fast is None:
            await self.send(b"".join(parts))
            return
        size = sum(len(p) for p in parts)
        head = b"\x0a" + _varint(size)  # BytesMessage field 1
        with fast.wrapper or contextlib.nullcontext():
            await fast.send_messages([_Parts([head, *parts], len(head) + size)])

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
        #: what carries the session, set by the opener: ``"docker-hijack"`` (Docker's
        #: ``/session``) or ``"control-session"`` (``Control.Session``); ``""`` if not recorded
        self.transport = ""

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
        self._receiver: _FastReceiver | None = None  # from start()

    def start(self) -> None:
        # Writes our SETTINGS frame into the queue right away, as a server must.
        self._protocol.connection_made(self._transport)
        _use_fast_streams(self._protocol.connection)
        self._receiver = _FastReceiver(self._protocol, server=True)

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

"""HTTP/2 fast paths for our own grpclib connections: DATA in and out without h2's frame objects.

Every byte of an upload or download crosses pure-Python HTTP/2 twice: the outer
connection to the daemon and the session's inner one, both in frames of at most
16 KiB (grpc-go's limit), so a GiB is 2 x 65,536 frames, and a tree of small files
is several gRPC messages per file on each. h2's per-frame and grpclib's per-message
costs dominated the transfers (profiles: ``benchmarks/bench_transfer.py``); on our
own connections they are cut here, without changing what goes on the wire or any
flow-control decision:

* :class:`FastStream`: DATA frames serialized by hand, whole windows per write,
  payloads not copied (:class:`~.messages.Parts`); messages sent and received
  without grpclib's per-message machinery (``send_messages``, ``recv_message_data``);
* :class:`FastBuffer`: the received DATA of a stream, acknowledged in batches;
* :class:`FastReceiver`: DATA, WINDOW_UPDATE and PING frames parsed and accounted
  without h2's frame objects, everything else through h2.

**Installed explicitly, per connection.** Nothing here changes h2, hyperframe or
grpclib for anyone else in the process: the code that owns a connection opts in --
the client channel's dialer (:mod:`.dial`) and the session server
(:mod:`llblib_async._tunnel.server`) call :func:`use_fast_streams` on their
``grpclib.protocol.Connection`` and feed received bytes to a :class:`FastReceiver`.
(An earlier version also replaced hyperframe's ``repr`` of DATA frames process-wide,
because h2 formats every received frame for a trace log; since :class:`FastReceiver`
keeps DATA frames away from h2, that patch no longer bought anything and is gone.)

They use h2/grpclib internals (grpclib is pinned; h2's are checked before use, see
:func:`h2_internals_ok`, and a connection falls back to the stock paths when they
differ) and are covered by ``tests/test_session_fastpath.py``, which compares them
with the stock code paths.
"""

from __future__ import annotations

import asyncio
import collections
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpclib.protocol
from grpclib.protocol import H2Protocol
from h2.connection import ConnectionInputs, ConnectionState
from h2.stream import H2Stream, H2StreamStateMachine, StreamInputs, StreamState

from .messages import GRPC_PREFIX, Parts, grpc_prefix

__all__ = ["FastBuffer", "FastReceiver", "FastStream", "fast_stream", "h2_internals_ok", "use_fast_streams"]

_FRAME_HEADER = struct.Struct(">HBBBL")  # 24-bit length, type, flags, stream id
#: Most bytes of DATA one ``writelines`` carries: backpressure (``write_ready``) is
#: checked between writes, so the transport overshoots its high-water mark by at
#: most this much (grpclib's frame-by-frame path: one frame).
_WRITE_MAX = 64 * 1024
_DATA_FRAME = 0x0


class FastStream(grpclib.protocol.Stream):
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
    a :class:`Parts`. (The socket transport joins them once; the session's
    ``OutboundBuffer`` keeps the slices until the session writer joins its message.)

    Waiting is grpclib's: ``connection.write_ready`` (transport backpressure) and
    ``window_updated`` when the window is exhausted. A frame that must end the stream,
    and the degenerate empty write, go through the original code.
    """

    def init_stream(self, stream_id: int, connection: grpclib.protocol.Connection) -> None:
        super().init_stream(stream_id, connection)
        self.buffer = FastBuffer(self.buffer._ack_callback)  # type: ignore[assignment]

    # Message level, for the session's own hot loops (the byte pipe, fsutil packets),
    # which skip grpclib's per-message ``Stream.send_message``/``recv_message``
    # (codec, event dispatch, statistics) once the call is under way.

    async def recv_message_data(self) -> bytes | None:
        """The next gRPC message's payload; ``None`` at the end of the stream."""
        buffer = self.buffer
        assert isinstance(buffer, FastBuffer)
        return await buffer.read_message()

    async def send_messages(self, payloads: Iterable[bytes | Parts]) -> None:
        """Send gRPC messages back to back (one ``send_data``: frames shared, not copied)."""
        parts: list[bytes | memoryview] = []
        size = 0
        for payload in payloads:
            n = len(payload)
            parts.append(grpc_prefix(n))
            if isinstance(payload, Parts):
                parts.extend(payload.parts)
            else:
                parts.append(payload)
            size += 5 + n
        await self.send_data(Parts(parts, size))

    async def send_data(self, data: bytes | memoryview | Parts, end_stream: bool = False) -> None:
        if end_stream or not data:
            await super().send_data(bytes(data), end_stream=end_stream)
            return
        assert self.id is not None
        stream_id = self.id
        h2c = self._h2_connection
        write_ready = self.connection.write_ready
        parts: collections.deque[bytes | memoryview] = collections.deque()
        left = 0
        for part in data.parts if isinstance(data, Parts) else (data,):
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


class FastBuffer:
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
            if n >= 5 and GRPC_PREFIX.unpack_from(data) == (0, n - 5):
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


def use_fast_streams(connection: grpclib.protocol.Connection) -> None:
    """Make the streams of a grpclib connection :class:`FastStream` (call after ``connection_made``).

    Left alone when this h2 lacks the internals the fast paths account in.
    """
    if not h2_internals_ok(connection._connection):
        return

    def create_stream(*, stream_id: int | None = None, wrapper: Any = None) -> grpclib.protocol.Stream:
        return FastStream(
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


class FastReceiver:
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
        self._connection = protocol.connection
        self._flush_needed = False
        self._passthrough = not h2_internals_ok(self._h2)

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
            # A later frame of the chunk may have closed the connection (grpclib drops
            # its transport on a protocol error or GOAWAY): nothing can be sent then.
            if not self._connection.is_closing():
                self._connection.flush()

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


def h2_internals_ok(h2c: Any) -> bool:
    """Whether this h2 has the internals :class:`FastReceiver` accounts in (else: pass through)."""
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


def fast_stream(stream: Any) -> FastStream | None:
    """The :class:`FastStream` under a grpclib client or server ``Stream``, if it has one.

    (grpclib keeps it in the private ``_stream``, set once the call has started.)
    """
    inner = getattr(stream, "_stream", None)
    return inner if isinstance(inner, FastStream) else None

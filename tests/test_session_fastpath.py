"""The HTTP/2 hot paths of the session (``_session.FastStream`` and friends).

Each is checked against the stock code path it replaces: the same bytes in must give
the same messages, the same bytes out and the same flow-control state in h2. The
"daemon" is a bare h2 client connection driven by hand, so the tests can send what
grpc-go sends (PINGs, WINDOW_UPDATEs, padded and empty DATA, odd chunking).
"""

from __future__ import annotations

import asyncio
import binascii
import random
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import hyperframe.frame
import pytest
from grpclib.const import Cardinality, Handler
from grpclib.protocol import H2Protocol

from llblib_async._tunnel.grpc_server import new_server_protocol
from llblib_async._tunnel.outbound import OutboundBuffer
from llblib_async._wire.dial import CoalescingTransport
from llblib_async._wire.h2fast import FastBuffer, FastReceiver, FastStream, use_fast_streams
from llblib_async._wire.messages import Parts, RawMessage

METHOD = "/t.Svc/Echo"


def test_importing_the_library_leaves_hyperframe_alone() -> None:
    # The fast paths are installed per connection; nothing may patch h2 or hyperframe
    # for other users in the process (an earlier version replaced hyperframe's repr).
    import llblib_async  # noqa: F401  (imported already; the point is that it was)

    assert hyperframe.frame._raw_data_repr.__module__ == "hyperframe.frame"
    data = bytes(range(256)) * 64
    r = binascii.hexlify(data).decode("ascii")
    assert repr(hyperframe.frame.DataFrame(1, data=data)).endswith("<hex:" + r[:20] + "...>")


# --------------------------------------------------------------------------- a server


class Server:
    """Our session server protocol on an ``OutboundBuffer``; the handler records messages."""

    def __init__(self, *, fast_receiver: bool, fast_streams: bool, reply: list[bytes] | None = None) -> None:
        self.received: list[bytes] = []
        self.reply = reply or []

        async def echo(stream: Any) -> None:
            async for msg in stream:
                self.received.append(msg.data)
            for data in self.reply:
                await stream.send_message(RawMessage(data))

        self.protocol: H2Protocol = new_server_protocol(
            {METHOD: Handler(echo, Cardinality.STREAM_STREAM, RawMessage, RawMessage)}
        )
        self.transport = OutboundBuffer(high_water=1 << 30, low_water=0, label="test")
        self.transport.set_protocol(self.protocol)
        self.protocol.connection_made(self.transport)
        if fast_streams:
            use_fast_streams(self.protocol.connection)
        self.feed: Callable[[bytes], None] = (
            FastReceiver(self.protocol, server=True).data_received
            if fast_receiver
            else self.protocol.data_received
        )

    async def output(self) -> bytes:
        await asyncio.sleep(0)
        out = b""
        while self.transport.get_write_buffer_size():
            out += await self.transport.next_chunk(1 << 30) or b""
        return out

    def h2(self) -> h2.connection.H2Connection:
        return self.protocol.connection._connection


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def client() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    return c


HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", METHOD),
    (":authority", "test"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


def daemon_bytes(rng: random.Random, server_hello: bytes) -> tuple[bytes, list[bytes]]:
    """A client's side of a call, with what grpc-go sends besides the messages."""
    c = client()
    c.receive_data(server_hello)  # the server's SETTINGS (4 MiB windows)
    c.send_headers(1, HEADERS)
    messages = [rng.randbytes(rng.choice([0, 1, 7, 100, 5000, 16379, 16380, 40000])) for _ in range(40)]
    stream = b"".join(grpc_message(m) for m in messages)
    pos = 0
    while pos < len(stream):
        n = min(rng.choice([1, 5, 100, 16384]), len(stream) - pos)
        pad = 3 if rng.random() < 0.1 else None
        if pad is not None:
            n = min(n, 16384 - pad - 1)
        c.send_data(1, stream[pos : pos + n], pad_length=pad)
        pos += n
        roll = rng.random()
        if roll < 0.1:
            c.ping(rng.randbytes(8))
        elif roll < 0.2:
            c.increment_flow_control_window(rng.randint(1, 1000))
        elif roll < 0.3:
            c.increment_flow_control_window(rng.randint(1, 1000), stream_id=1)
        # (no empty DATA frames: grpclib's own buffer takes one for the end of the stream)
    c.end_stream(1)
    return c.data_to_send(), messages


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice([1, 2, 9, 10, 100, 4096, 20000, 70000])
        out.append(data[pos : pos + n])
        pos += n
    return out


def h2_state(c: h2.connection.H2Connection) -> tuple[Any, ...]:
    stream = c.streams.get(1)
    return (
        c.state_machine.state,
        c.outbound_flow_control_window,
        c._inbound_flow_control_window_manager.current_window_size,
        stream and stream.outbound_flow_control_window,
        stream and stream._inbound_window_manager.current_window_size,
        stream and stream.state_machine.state,
    )


@pytest.mark.parametrize("seed", range(8))
async def test_fast_receiver_matches_h2(seed: int) -> None:
    rng = random.Random(seed)
    data, messages = daemon_bytes(rng, await Server(fast_receiver=False, fast_streams=False).output())
    pieces = chunks(data, rng)
    results = []
    for fast in (False, True):
        server = Server(fast_receiver=fast, fast_streams=False)
        out = await server.output()  # our SETTINGS
        for piece in pieces:
            server.feed(piece)
        state_before_reads = h2_state(server.h2())
        for _ in range(20):
            await asyncio.sleep(0)
        out += await server.output()
        results.append((server.received, out, state_before_reads, h2_state(server.h2())))
    plain, fast_ = results
    assert fast_[0] == plain[0] == messages
    assert fast_[1] == plain[1]  # SETTINGS ack, PING acks, WINDOW_UPDATEs, trailers
    assert fast_[2] == plain[2]
    assert fast_[3] == plain[3]


async def test_fast_receiver_leaves_errors_to_h2() -> None:
    outputs = []
    for fast in (False, True):
        server = Server(fast_receiver=fast, fast_streams=False)
        c = client()
        c.send_headers(1, HEADERS)
        server.feed(c.data_to_send())
        # DATA beyond the connection window: h2's flow-control error closes it
        frame = b"\x00\x40\x00\x00\x00\x00\x00\x00\x01" + bytes(16384)
        server.feed(frame * 5)
        out = await server.output()
        outputs.append(out)
        assert server.h2().state_machine.state is h2.connection.ConnectionState.CLOSED
    assert outputs[0] == outputs[1]


# --------------------------------------------------------------------------- sending


@pytest.mark.parametrize("sizes", [[1], [0, 5, 16379, 16380, 16381], [300_000], [70_000] * 5])
async def test_fast_stream_frames_like_grpclib(sizes: list[int]) -> None:
    rng = random.Random(sum(sizes))
    reply = [rng.randbytes(n) for n in sizes]
    outputs = []
    for fast in (False, True):
        server = Server(fast_receiver=False, fast_streams=fast, reply=reply)
        c = client()
        c.send_headers(1, HEADERS, end_stream=True)
        server.feed(c.data_to_send())
        out = await server.output()
        # let the reply flow under the default 64 KiB windows, acknowledging as h2 would
        received = b""
        for _ in range(100):
            for event in c.receive_data(out):
                if isinstance(event, h2.events.DataReceived):
                    received += event.data
                    c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            server.feed(c.data_to_send())
            out = await server.output()
            if not out:
                break
        outputs.append((received, h2_state(server.h2())))
    assert outputs[0] == outputs[1]
    assert outputs[1][0] == b"".join(grpc_message(m) for m in reply)


async def test_fast_stream_send_messages_and_recv_message_data() -> None:
    server = Server(fast_receiver=True, fast_streams=True)
    c = client()
    c.send_headers(1, HEADERS)
    c.send_data(1, grpc_message(b"one") + grpc_message(b"") + grpc_message(b"three"))
    server.feed(c.data_to_send())
    await asyncio.sleep(0)
    stream = server.protocol.processor.streams[1]
    assert isinstance(stream, FastStream)
    await stream.send_headers([(":status", "200"), ("content-type", "application/grpc")])
    await stream.send_messages([b"a", Parts([b"b", memoryview(b"cd")], 3), b""])
    out = await server.output()
    got = b"".join(e.data for e in c.receive_data(out) if isinstance(e, h2.events.DataReceived))
    assert got == grpc_message(b"a") + grpc_message(b"bcd") + grpc_message(b"")


# --------------------------------------------------------------------------- the buffer


async def test_fast_buffer_reads_and_acknowledges_in_batches() -> None:
    acks: list[int] = []
    buf = FastBuffer(acks.append)
    buf.add(grpc_message(b"hello"), 10)
    buf.add(b"", 0)  # an empty DATA frame is not the end of the stream
    assert await buf.read_message() == b"hello"
    assert acks == [10]  # all consumed: acknowledged at once
    buf.add(b"\x00\x00\x00", 3)
    buf.add(b"\x00\x04ab", 4)
    buf.add(b"cd", 2)
    buf.add(b"tail", 4)
    assert await buf.read_message() == b"abcd"
    assert acks == [10]  # "tail" still queued: the 9 bytes are not acknowledged yet
    assert buf.unacked_size() == 9 + 4
    buf.eof()
    assert await buf.read(5) == b""


async def test_fast_buffer_waits_for_data_and_ends() -> None:
    acks: list[int] = []
    buf = FastBuffer(acks.append)

    async def later() -> None:
        await asyncio.sleep(0.01)
        buf.add(b"abc", 3)
        await asyncio.sleep(0.01)
        buf.add(b"def", 3)
        buf.eof()

    task = asyncio.ensure_future(later())
    assert await buf.read(6) == b"abcdef"
    assert acks == [3, 3]  # waiting for more, it acknowledged what it had
    assert await buf.read_message() is None
    await task


# --------------------------------------------------------------------------- transports


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_coalescing_transport_writes_once_per_iteration() -> None:
    inner = FakeTransport()
    t = CoalescingTransport(inner)
    t.write(b"a")
    t.writelines([b"b", memoryview(b"c"), bytearray(b"d")])
    t.write(b"e")
    assert inner.writes == []
    await asyncio.sleep(0)
    assert inner.writes == [b"abcde"]
    t.write(b"f")
    t.close()  # flushes first
    assert inner.writes == [b"abcde", b"f"]
    assert inner.closed


async def test_outbound_buffer_keeps_views_and_splits() -> None:
    buf = OutboundBuffer(high_water=100, low_water=10, label="t")
    payload = bytes(range(50))
    buf.writelines([b"head", memoryview(payload)[:30], bytearray(b"xy")])
    parts = await buf.next_parts(20)
    assert parts is not None
    assert b"".join(parts) == b"head" + payload[:16]
    assert await buf.next_chunk(100) == payload[16:30] + b"xy"


async def test_fast_receiver_survives_the_connection_closing_mid_chunk() -> None:
    """A PING (whose ack the fast receiver flushes after the chunk) and then a frame that
    breaks the protocol in one chunk: grpclib closes the connection and drops its
    transport, while h2 has queued its GOAWAY. The receiver must not flush into the
    closed connection (it raised ``AttributeError: ... '_transport'`` there, which tore
    down the session), just as grpclib's own path does not."""
    for fast in (False, True):
        server = Server(fast_receiver=fast, fast_streams=False)
        c = client()
        c.send_headers(1, HEADERS)
        server.feed(c.data_to_send())
        c.ping(b"12345678")
        too_much = b"\x00\x40\x00\x00\x00\x00\x00\x00\x01" + bytes(16384)  # beyond the window
        server.feed(c.data_to_send() + too_much * 5)
        assert server.protocol.connection.is_closing()
        assert server.h2().state_machine.state is h2.connection.ConnectionState.CLOSED

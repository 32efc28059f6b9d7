"""One process in a container on the build worker: one ``LLBBridge.ExecProcess`` stream.

The wire rules (protocol notes §4.4) are kept here so nobody else has to know them:

* the client picks the process id and sends ``Init`` (the fds to open: ``0`` only when
  stdin is fed, ``1``/``2`` for stdout/stderr, only ``1`` with a TTY, which merges them);
* the daemon answers ``Started``, then output chunks ``File{fd, data}``, ``Exit{code}``,
  ``File{fd, eof}`` for each output (possibly after ``Exit``) and ``Done`` last;
* the daemon only sends ``Done`` once *every* pipe is closed, stdin included: after
  ``Exit`` stdin is closed for the caller if it is still open;
* an *init* process with stdin open never reports ``Exit`` until stdin is closed, so
  stdin is only opened when the caller feeds it.

Output goes where the caller says (:data:`Output`): captured in memory (the default;
:class:`~llblib_async.ProcessResult` gets it), read as an async byte stream
(``"pipe"``: :attr:`Process.stdout` / :attr:`Process.stderr`, with back-pressure: the
daemon is not read faster than the caller reads), written to a binary file object,
handed to an async callback, or dropped. The last 4 KiB of all output is always kept
for the :class:`~llblib_async.errors.ContainerExitError` message.
"""

from __future__ import annotations

import collections
import contextlib
import signal as signal_module
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import IO, Any, Literal, TypeAlias

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from grpclib.client import Channel
from grpclib.const import Cardinality

from .._pb import pb
from .._pb.moby.buildkit.v1 import frontend as gw
from .._wire.grpc_errors import translating_errors
from .._wire.h2fast import FastStream, fast_stream
from .._wire.messages import RawMessage
from .._wire.protobuf import bytes_field, iter_fields, len_field, read_varint, str_field
from ..errors import ConnectionLostError, ContainerError, ContainerExitError
from ..process_result import OUTPUT_TAIL_BYTES, ProcessResult

__all__ = [
    "STDIN_CHUNK",
    "ByteStream",
    "Input",
    "Output",
    "Process",
    "ProcessStdin",
    "SetupHook",
    "TeardownHook",
]

EXEC_PROCESS = "/moby.buildkit.v1.frontend.LLBBridge/ExecProcess"

#: Size of the stdin chunks sent to the daemon.
STDIN_CHUNK = 1 << 20

Output: TypeAlias = "Literal['capture', 'pipe', 'discard'] | IO[bytes] | Callable[[bytes], Awaitable[None]]"
"""Where a process's stdout or stderr goes: ``"capture"`` (in memory, on the result),
``"pipe"`` (an async :class:`ByteStream` to read), ``"discard"``, a binary file object
(``write`` is called with each chunk), or an ``async def on_output(chunk: bytes)``."""

Input: TypeAlias = "Literal['pipe'] | bytes | IO[bytes] | AsyncIterable[bytes] | None"
"""A process's stdin: ``None`` (none: stdin is not opened), ``"pipe"`` (write it with
:attr:`Process.stdin`), ``bytes``, a binary file object read to its end, or an async
iterable of chunks. stdin is closed when the source ends."""


SetupHook: TypeAlias = "Callable[[Process], Awaitable[None]]"
"""``async def setup(process)``: called in order once the process has started."""

TeardownHook: TypeAlias = "Callable[[ProcessResult | None], Awaitable[None]]"
"""``async def teardown(result)``: called in order when the process is over, whatever
happened (``result`` is ``None`` when it never ran to an exit)."""


def signal_name(sig: str | int) -> str:
    """``"INT"``, ``"SIGINT"``, ``2``, ``signal.SIGINT`` -> ``"INT"`` (the daemon wants names without SIG)."""
    if isinstance(sig, str):
        name = sig.upper().removeprefix("SIG")
        if not name or not name.isalnum():
            raise ContainerError("signal", sig, "not a signal name")
        return name
    try:
        return signal_module.Signals(sig).name.removeprefix("SIG")
    except ValueError:
        raise ContainerError("signal", sig, "not a signal number") from None


class _ExecIn:
    """An ``ExecMessage`` from the daemon: output chunks (``File``) decoded by hand -- the
    generated class costs more than the rest of the path per chunk -- the rest by the stubs."""

    __slots__ = ("data", "eof", "fd", "message")

    def __init__(
        self, message: gw.ExecMessage | None, fd: int = 0, data: bytes = b"", eof: bool = False
    ) -> None:
        self.message = message
        self.fd = fd
        self.data = data
        self.eof = eof

    @classmethod
    def FromString(cls, buf: bytes) -> _ExecIn:  # grpclib's codec calls this name
        view = memoryview(buf)
        for number, wire_type, start, end in iter_fields(view):
            if number == 3 and wire_type == 2:  # file: FdMessage{fd=1, eof=2, data=3}
                fd, eof, data = 0, False, b""
                sub = view[start:end]
                for n, _, s, e in iter_fields(sub):
                    if n == 1:
                        fd = read_varint(sub, s)[0]
                    elif n == 2:
                        eof = bool(read_varint(sub, s)[0])
                    elif n == 3:
                        data = bytes(sub[s:e])
                return cls(None, fd, data, eof)
        return cls(gw.ExecMessage.parse(bytes(buf)))


def _stdin_message(process_id: str, data: bytes) -> RawMessage:
    """``ExecMessage{process_id, file: {fd: 0, data}}`` encoded by hand."""
    return RawMessage(str_field(1, process_id) + len_field(3, bytes_field(3, data)))


class ByteStream:
    """An output of a process read as a stream: ``async for chunk in stream`` or ``await read()``."""

    def __init__(self, receive: MemoryObjectReceiveStream[bytes]) -> None:
        self._receive = receive
        self._buffer = b""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._buffer:
            data, self._buffer = self._buffer, b""
            yield data
        async for chunk in self._receive:
            yield chunk

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``-1``: everything until the end); ``b""`` at the end."""
        if n < 0:
            parts = [self._buffer]
            self._buffer = b""
            async for chunk in self._receive:
                parts.append(chunk)
            return b"".join(parts)
        if not self._buffer:
            try:
                self._buffer = await self._receive.receive()
            except anyio.EndOfStream:
                return b""
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


class ProcessStdin:
    """The stdin of a process started with ``stdin="pipe"``."""

    def __init__(self, process: Process) -> None:
        self._process = process

    async def write(self, data: bytes) -> None:
        """Send ``data`` (in chunks of at most :data:`STDIN_CHUNK` bytes)."""
        await self._process._write_stdin(data)

    async def close(self) -> None:
        """Close stdin (the process reads end of file). Closing twice is harmless."""
        await self._process._close_stdin()

    @property
    def closed(self) -> bool:
        return self._process._stdin_closed


class _Tail:
    """The last :data:`OUTPUT_TAIL_BYTES` of a process's output, in arrival order."""

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0

    def append(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        while self._size - len(self._chunks[0]) >= OUTPUT_TAIL_BYTES:
            self._size -= len(self._chunks.popleft())

    def value(self) -> bytes:
        return b"".join(self._chunks)[-OUTPUT_TAIL_BYTES:]


class _Sink:
    """One output fd of a process."""

    def __init__(self, target: Output, tail: _Tail) -> None:
        self.target = target
        self.captured = bytearray()
        self.stream: ByteStream | None = None
        self._send: MemoryObjectSendStream[bytes] | None = None
        self._tail = tail
        if target == "pipe":
            send, receive = anyio.create_memory_object_stream[bytes](64)
            self._send, self.stream = send, ByteStream(receive)
        elif not (
            target in ("capture", "discard") or callable(target) or callable(getattr(target, "write", None))
        ):
            raise ContainerError(
                "output", target, "expected 'capture', 'pipe', 'discard', a file object or a callable"
            )

    async def feed(self, data: bytes) -> None:
        self._tail.append(data)
        target = self.target
        if target == "capture":
            self.captured += data
        elif self._send is not None:
            with contextlib.suppress(anyio.BrokenResourceError):  # the reader is gone: drop the rest
                await self._send.send(data)
        elif target == "discard":
            pass
        elif callable(target):
            await target(data)
        else:
            target.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        if self._send is not None:
            self._send.close()


class Process:
    """A process in a container; made by :meth:`Container.start <llblib_async.Container.start>`.

    ``stdin`` is a :class:`ProcessStdin` when started with ``stdin="pipe"``; ``stdout`` /
    ``stderr`` are :class:`ByteStream` when started with ``"pipe"``. :meth:`wait` gives
    the exit code; :meth:`signal` and :meth:`resize` act on the running process.
    """

    def __init__(
        self,
        *,
        channel: Channel,
        metadata: Sequence[tuple[str, str]],
        address: str,
        container_id: str,
        process_id: str,
        meta: pb.Meta,
        tty: bool,
        stdin: Input,
        stdout: Output,
        stderr: Output,
        security: pb.SecurityMode,
        secret_env: Sequence[pb.SecretEnv],
    ) -> None:
        self.id = process_id
        self.args = tuple(meta.args)
        self.tty = tty
        self._channel = channel
        self._metadata = list(metadata)
        self._address = address
        self._tail = _Tail()
        self._sinks = {1: _Sink(stdout, self._tail)}
        if not tty:
            self._sinks[2] = _Sink(stderr, self._tail)
        self._stdin_source = stdin
        self._has_stdin = stdin is not None
        self._stdin_closed = not self._has_stdin
        self.stdin = ProcessStdin(self) if stdin == "pipe" else None
        self.stdout = self._sinks[1].stream
        self.stderr = self._sinks[2].stream if 2 in self._sinks else None
        fds = ([0] if self._has_stdin else []) + sorted(self._sinks)
        self._init = gw.ExecMessage(
            process_id=process_id,
            init=gw.InitMessage(
                container_id=container_id,
                meta=meta,
                fds=fds,
                tty=tty,
                security=security,
                secretenv=list(secret_env),
            ),
        )
        self._stream: Any = None
        self._send_lock = anyio.Lock()
        self._started = anyio.Event()
        self._done = anyio.Event()
        self._ready = anyio.Event()
        self._exit_code: int | None = None
        self._exit_message = ""
        self._failure: BaseException | None = None
        self._done_seen = False
        self._stdin_sent = 0

    # --- running ---------------------------------------------------------------------------

    async def _run(self) -> None:
        """The stream's life: Init, wait for Started (then :attr:`_ready` is set), pump until Done.

        A failure is kept for :meth:`wait` (or :meth:`_started_or_raise`), never raised
        here: a broken stream must not tear down the container's other processes.
        """
        try:
            with translating_errors("LLBBridge.ExecProcess", self._address):
                async with self._channel.request(
                    EXEC_PROCESS,
                    Cardinality.STREAM_STREAM,
                    RawMessage,
                    _ExecIn,
                    metadata=self._metadata,
                ) as stream:
                    self._stream = stream
                    await stream.send_request()
                    await stream.send_message(RawMessage(bytes(self._init)))
                    async with anyio.create_task_group() as tg:

                        async def receive() -> None:
                            try:
                                await self._receive(stream)
                            finally:
                                tg.cancel_scope.cancel()  # the stdin pump, if still waiting for input

                        tg.start_soon(receive)
                        await self._started.wait()
                        self._ready.set()
                        if self._has_stdin and self._stdin_source != "pipe":
                            tg.start_soon(self._pump_stdin)
                    await self._end(stream)
        except Exception as err:
            # The receive task's error comes in a group of one: keep the error itself.
            while isinstance(err, ExceptionGroup) and len(err.exceptions) == 1:
                err = err.exceptions[0]
            self._failure = err
        finally:
            for sink in self._sinks.values():
                sink.close()
            self._done.set()
            self._ready.set()

    async def _receive(self, stream: Any) -> None:
        fast: FastStream | None = None
        while True:
            incoming: _ExecIn | None
            if fast is not None:
                # The message-level fast path under grpclib (as the session pipe uses it).
                with fast.wrapper or contextlib.nullcontext():
                    payload = await fast.recv_message_data()
                incoming = _ExecIn.FromString(payload) if payload is not None else None
            else:
                # The first message through grpclib, which handles the response headers.
                incoming = await stream.recv_message()
                fast = fast_stream(stream)
            if incoming is None:
                break
            msg = incoming.message
            if msg is None:  # an output chunk
                sink = self._sinks.get(incoming.fd)
                if incoming.data and sink is not None:
                    await sink.feed(incoming.data)
                if incoming.eof and sink is not None:
                    sink.close()
            elif msg.started is not None:
                self._started.set()
            elif msg.exit is not None:
                self._exit_code = msg.exit.code
                if msg.exit.error is not None:
                    self._exit_message = msg.exit.error.message
                if not self._stdin_closed:
                    # Done only comes once every pipe is closed, stdin included.
                    await self._close_stdin()
            elif msg.done is not None:
                self._done_seen = True
                break
        if not self._started.is_set():
            # Ended before it started: the daemon refused the process.
            self._started.set()
        if self._exit_code is None:
            if self._stdin_sent:
                # BuildKit ends the whole ExecProcess call when writing stdin into the
                # process fails (it exited without reading it all): the status is lost.
                raise ContainerError(
                    "stdin",
                    f"{self._stdin_sent} bytes",
                    "the daemon ended the process's stream without its exit status: BuildKit does "
                    "so when stdin is written after the process stopped reading it and exited",
                )
            raise ConnectionLostError(self._address, f"process {self.id} ended without an exit status")

    async def _end(self, stream: Any) -> None:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await stream.end()

    async def _send(self, message: gw.ExecMessage | RawMessage) -> None:
        if self._stream is None or self._done.is_set():
            return
        raw = message if isinstance(message, RawMessage) else RawMessage(bytes(message))
        async with self._send_lock:
            with translating_errors("LLBBridge.ExecProcess", self._address):
                await self._stream.send_message(raw)

    async def _write_stdin(self, data: bytes, *, quiet: bool = False) -> None:
        """Send ``data``; once stdin is closed raise (``quiet``: drop it, the process is gone)."""
        view = memoryview(data)
        for start in range(0, len(view), STDIN_CHUNK):
            if self._stdin_closed:
                if quiet:
                    return
                raise ContainerError("stdin", "closed", "stdin of the process is closed")
            chunk = bytes(view[start : start + STDIN_CHUNK])
            await self._send(_stdin_message(self.id, chunk))
            self._stdin_sent += len(chunk)

    async def _close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        await self._send(gw.ExecMessage(process_id=self.id, file=gw.FdMessage(fd=0, eof=True)))

    async def _pump_stdin(self) -> None:
        source = self._stdin_source
        try:
            if isinstance(source, bytes | bytearray | memoryview):
                await self._write_stdin(bytes(source), quiet=True)
            elif hasattr(source, "__aiter__"):
                async for chunk in source:  # type: ignore[union-attr]
                    await self._write_stdin(bytes(chunk), quiet=True)
                    if self._exit_code is not None:
                        break
            elif callable(getattr(source, "read", None)):
                reader = source.read  # type: ignore[union-attr]
                while self._exit_code is None:
                    chunk = await anyio.to_thread.run_sync(reader, STDIN_CHUNK, abandon_on_cancel=True)
                    if not chunk:
                        break
                    await self._write_stdin(bytes(chunk), quiet=True)
            else:
                raise ContainerError(
                    "stdin", source, "expected None, 'pipe', bytes, a file object or an async iterable"
                )
        finally:
            with anyio.CancelScope(shield=True):
                if self._exit_code is None:
                    await self._close_stdin()

    async def _started_or_raise(self) -> None:
        await self._ready.wait()
        if self._failure is not None and not self._started.is_set():
            raise self._failure
        if self._failure is not None and self._exit_code is None:
            raise self._failure

    # --- public ------------------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited, else ``None``."""
        return self._exit_code

    async def wait(self) -> int:
        """Wait until the process has exited and its output is all delivered; its exit code.

        Raises :class:`~llblib_async.errors.ConnectionLostError` when the daemon went away.
        """
        await self._done.wait()
        if self._exit_code is None:
            failure = self._failure
            if isinstance(failure, Exception):
                raise failure
            raise ConnectionLostError(self._address, f"process {self.id} ended without an exit status")
        return self._exit_code

    async def signal(self, sig: str | int) -> None:
        """Send signal ``sig`` (``"INT"``, ``"SIGTERM"``, ``signal.SIGKILL``...) to the process."""
        await self._send(gw.ExecMessage(process_id=self.id, signal=gw.SignalMessage(name=signal_name(sig))))

    async def resize(self, rows: int, cols: int) -> None:
        """Set the size of the process's TTY (only for processes started with ``tty=True``)."""
        if not self.tty:
            raise ContainerError("resize", (rows, cols), "the process has no TTY")
        await self._send(gw.ExecMessage(process_id=self.id, resize=gw.ResizeMessage(rows=rows, cols=cols)))

    def result(self) -> ProcessResult:
        """What the process gave (call after :meth:`wait`): exit code and captured output."""
        tail = self._tail.value()
        return ProcessResult(
            args=self.args,
            exit_code=self._exit_code if self._exit_code is not None else 255,
            stdout=bytes(self._sinks[1].captured),
            stderr=bytes(self._sinks[2].captured) if 2 in self._sinks else b"",
            tail=tail,
            error=self._exit_message,
        )

    async def check(self) -> ProcessResult:
        """:meth:`wait`, then the result; a non-zero exit raises
        :class:`~llblib_async.errors.ContainerExitError`."""
        await self.wait()
        result = self.result()
        if result.exit_code != 0:
            raise ContainerExitError(result)
        return result

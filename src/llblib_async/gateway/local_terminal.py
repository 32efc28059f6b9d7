"""The local terminal lent to a process in a container: raw mode, resizes, keys, restore.

:func:`attach_terminal` is what ``Container.run(terminal=True)`` and interactive
``OnError`` shells use:

* it takes the terminal with :func:`llblib_async.terminal.claim_terminal` (one owner at a
  time; progress displays that registered a suspender pause meanwhile);
* puts the input terminal in raw mode, so every key -- Ctrl-C, Ctrl-Z, Ctrl-D included --
  goes to the process through its pty instead of signalling this program;
* forwards every ``SIGWINCH`` (the local window changed size) as a resize, the first
  one at once; Python runs signal handlers in the main thread only, so when the event
  loop runs in another thread the size is read every ``RESIZE_POLL`` seconds instead;
* and restores the terminal's exact ``termios`` attributes and the previous ``SIGWINCH``
  handler on every way out: normal exit, exception, cancellation, daemon death.

When the input is not a terminal (a pipe, a file, ``/dev/null``) nothing is made raw and
no resize is forwarded; the bytes are still passed through.

Deviation from Go llblib: Go's ``WithTTY`` skips its teardowns when a later setup fails
and leaves the terminal raw; here restoring is a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
import threading
import tty
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from ..terminal import claim_terminal

__all__ = ["LocalTerminal", "attach_terminal"]


class TerminalInput:
    """The bytes typed on the input fd, as an async iterable (ends at end of file or close)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._send, self._receive = anyio.create_memory_object_stream[bytes](float("inf"))
        self._loop = asyncio.get_running_loop()
        self._watching = False
        try:
            self._loop.add_reader(fd, self._on_ready)
            self._watching = True
        except (PermissionError, OSError):
            # A regular file cannot be polled: read it in a thread, it never blocks for long.
            threading.Thread(target=self._read_all, daemon=True).start()

    def _on_ready(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._stop_watching()
            self._send.close()
            return
        with contextlib.suppress(anyio.ClosedResourceError):
            self._send.send_nowait(data)

    def _read_all(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError:
                data = b""
            if not data:
                self._loop.call_soon_threadsafe(self._send.close)
                return
            try:
                self._loop.call_soon_threadsafe(self._send.send_nowait, data)
            except RuntimeError:  # the loop is closed
                return

    def _stop_watching(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._fd)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._receive.__aiter__()

    def close(self) -> None:
        self._stop_watching()
        self._send.close()


class LocalTerminal:
    """The local input and output fds while a process has them."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.is_tty = os.isatty(fd_in)
        self.input = TerminalInput(fd_in)

    def size(self) -> tuple[int, int] | None:
        """``(rows, cols)`` of the local terminal, ``None`` when there is none."""
        for fd in (self.fd_out, self.fd_in):
            try:
                rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
            except OSError:
                continue
            if rows and cols:
                return rows, cols
        return None

    async def write(self, data: bytes) -> None:
        """Write ``data`` to the output fd (all of it)."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd_out, view)
            except BlockingIOError:
                await anyio.sleep(0.01)  # a non-blocking tty is full: let it drain
                continue
            view = view[n:]

    async def write_err(self, data: bytes) -> None:
        """Write ``data`` to stderr (fd 2) when the output is fd 1, else to the output fd."""
        fd = 2 if self.fd_out == 1 else self.fd_out
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    @contextlib.asynccontextmanager
    async def forwarding_resizes(self, resize: Callable[[int, int], Awaitable[None]]) -> AsyncIterator[None]:
        """Call ``resize(rows, cols)`` now and on every ``SIGWINCH`` until the block ends.

        Signal handlers can only be set from the main thread; in another thread the
        size is polled (every ``RESIZE_POLL`` seconds) and each change forwarded.
        """
        size = self.size()
        if size is not None:
            await resize(*size)
        if not self.is_tty:
            yield
            return
        if threading.current_thread() is not threading.main_thread():
            async with self._polling_resizes(resize, size):
                yield
            return
        loop = asyncio.get_running_loop()
        changed = anyio.Event()
        events: list[anyio.Event] = [changed]

        def on_winch(signum: int, frame: object) -> None:
            loop.call_soon_threadsafe(events[0].set)

        previous = signal.signal(signal.SIGWINCH, on_winch)
        try:
            async with anyio.create_task_group() as tg:

                async def forward() -> None:
                    while True:
                        await events[0].wait()
                        events[0] = anyio.Event()
                        size = self.size()
                        if size is not None:
                            await resize(*size)

                tg.start_soon(forward)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            signal.signal(signal.SIGWINCH, previous)

    @contextlib.asynccontextmanager
    async def _polling_resizes(
        self, resize: Callable[[int, int], Awaitable[None]], size: tuple[int, int] | None
    ) -> AsyncIterator[None]:
        """Forward each change of the size, read every ``RESIZE_POLL`` seconds (no signals here)."""

        async def poll(last: tuple[int, int] | None) -> None:
            while True:
                await anyio.sleep(RESIZE_POLL)
                now = self.size()
                if now is not None and now != last:
                    last = now
                    await resize(*now)

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll, size)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()


#: how often the terminal's size is read when no ``SIGWINCH`` handler can be set (seconds)
RESIZE_POLL = 0.25


@contextlib.asynccontextmanager
async def attach_terminal(fd_in: int = 0, fd_out: int = 1) -> AsyncIterator[LocalTerminal]:
    """Own the local terminal (claimed, raw) for the block; restored on every exit path."""
    async with claim_terminal():
        saved = None
        if os.isatty(fd_in):
            saved = termios.tcgetattr(fd_in)
        term = None
        try:
            if saved is not None:
                tty.setraw(fd_in, termios.TCSANOW)
            term = LocalTerminal(fd_in, fd_out)
            yield term
        finally:
            if term is not None:
                term.input.close()
            if saved is not None:
                termios.tcsetattr(fd_in, termios.TCSANOW, saved)

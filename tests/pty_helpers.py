"""A child process on a real pseudo-terminal (stdlib ``pty``), for the tests of what a user
at a terminal sees: interactive container shells, the full-screen progress display."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Resize the pty ``fd`` belongs to (either side), as a terminal window's user does."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """The master side of a pty whose slave is a child process's controlling terminal."""

    def __init__(self, argv: list[str]) -> None:
        self.master, self.slave = pty.openpty()
        self.set_size(24, 80)
        self.modes_before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(
            argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            start_new_session=True,  # setsid(); then the pty becomes the controlling terminal
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        self.output = b""
        #: what the terminal showed up to the end of the last ``expect``'s match, since the one before
        self.consumed = b""
        self.modes_after: list[object] = []

    def set_size(self, rows: int, cols: int) -> None:
        set_window_size(self.slave, rows, cols)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = 120) -> re.Match[bytes]:
        """Read until ``pattern`` appears in the new output; a hang guard, not a speed limit."""
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.output)
            if m:
                self.consumed = self.output[: m.end()]
                self.output = self.output[m.end() :]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {pattern!r} in the terminal output: {self.output[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # the child is gone and the slave closed
                    pytest.fail(f"terminal closed before {pattern!r}: {self.output[-2000:]!r}")

    def close(self, *, kill: bool = False) -> int:
        if kill:
            self.proc.kill()
        try:
            code = self.proc.wait(timeout=120)
            self.modes_after = termios.tcgetattr(self.slave)  # before the master closes
            return code
        finally:
            os.close(self.master)
            os.close(self.slave)

    def modes_now(self) -> list[object]:
        return termios.tcgetattr(self.slave)

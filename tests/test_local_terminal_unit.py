"""The local terminal lent to a container's process: resizes, on a real pty (no daemon)."""

from __future__ import annotations

import asyncio
import os
import pty
import threading

import anyio
from pty_helpers import set_window_size

from llblib_async.gateway.local_terminal import LocalTerminal


def test_resizes_are_forwarded_from_an_event_loop_outside_the_main_thread() -> None:
    """No SIGWINCH handler can be set there (Python runs them in the main thread only): the
    size is polled, and each change still reaches the process."""
    master, slave = pty.openpty()
    set_window_size(slave, 24, 80)
    sizes: list[tuple[int, int]] = []
    failures: list[BaseException] = []

    async def lend_the_terminal() -> None:
        term = LocalTerminal(slave, slave)
        resized = anyio.Event()

        async def resize(rows: int, cols: int) -> None:
            sizes.append((rows, cols))
            if (rows, cols) == (40, 120):
                resized.set()

        try:
            async with term.forwarding_resizes(resize):
                set_window_size(master, 40, 120)  # the user drags the window
                with anyio.fail_after(60):  # a hang guard, not a speed limit
                    await resized.wait()
        finally:
            term.input.close()

    def in_a_thread() -> None:
        try:
            asyncio.run(lend_the_terminal())
        except BaseException as err:  # re-raised in the test's thread
            failures.append(err)

    worker = threading.Thread(target=in_a_thread)
    try:
        worker.start()
        worker.join()
    finally:
        os.close(master)
        os.close(slave)
    assert not failures, failures
    assert sizes == [(24, 80), (40, 120)]

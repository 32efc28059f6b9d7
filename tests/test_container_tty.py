"""Interactive OnError shells driven through a real pseudo-terminal (stdlib ``pty``).

A child Python program runs a failing build with ``on_error=OnError()``; its stdin,
stdout and stderr are the slave side of a pty, which is its controlling terminal, so
it sees exactly what a user at a terminal would. The test types on the master side.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pty_helpers import Terminal

from llblib_async.testing import BuildkitDaemon

CHILD = textwrap.dedent(
    """
    import asyncio, contextlib, os, sys
    import llblib_async
    from llblib_async import OnError, Solver, llb
    from llblib_async.terminal import add_terminal_suspender

    @contextlib.asynccontextmanager
    async def display():  # a progress display stepping aside while the shell has the terminal
        os.write(1, b"[display paused]\\r\\n")
        try:
            yield
        finally:
            os.write(1, b"[display resumed]\\r\\n")

    async def main() -> None:
        add_terminal_suspender(display)
        address, rootfs = sys.argv[1], sys.argv[2]
        root = llb.scratch().copy(llb.local(rootfs), "/", "/")
        failing = root.run(["/bin/sh", "-c", "echo before-fail > /marker; exit 5"]).root
        solver = Solver()
        try:
            async with llblib_async.connect(address) as client, solver.session(client) as session:
                await session.do(solver.build(failing, on_error=OnError()))
        except llblib_async.SolveError as err:
            shell = err.debug[0].exit_code if err.debug else None
            print(f"\\r\\nRESULT build={err.exit_code} shell={shell}", flush=True)
        except llblib_async.BuildKitError as err:
            print(f"\\r\\nFAILED {type(err).__name__}", flush=True)

    asyncio.run(main())
    """
)


@contextlib.contextmanager
def _child(tmp_path: Path, address: str, rootfs: Path) -> Iterator[Terminal]:
    """The child program on a fresh pty, closed on leaving: waited for (its exit code is then
    ``term.proc.returncode``), or killed when the test failed, so no child outlives it."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    term = Terminal([sys.executable, str(script), address, str(rootfs)])
    try:
        yield term
    except BaseException:
        term.close(kill=True)
        raise
    term.close()


@pytest.mark.timeout(300)
def test_interactive_on_error_shell_through_a_pty(
    tmp_path: Path, buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    with _child(tmp_path, buildkit_daemon.address, buildkit_busybox_rootfs) as term:
        term.expect(r"\[display paused\]")
        term.expect(r"/ # ")  # the shell's prompt, in the failed step's filesystem
        assert term.modes_now() != term.modes_before  # raw while the shell has the terminal
        term.type("echo hel''lo\r")
        term.expect(r"\r\nhello\r\n")
        term.type("cat /marker\r")
        term.expect(r"before-fail")
        # A resize of the local terminal reaches the container's pty.
        term.set_size(33, 101)
        for _ in range(50):  # SIGWINCH is handled asynchronously: ask until it shows
            term.type("stty size\r")
            size = term.expect(r"\r\n(\d+ \d+)\r\n").group(1)
            if size == b"33 101":
                break
        assert size == b"33 101"
        # Ctrl-C goes through the pty to the foreground process in the container.
        term.type("sh -c 'echo slee\"\"ping; exec sleep 1000'\r")
        term.expect(r"sleeping\r\n")
        term.type("\x03")
        term.expect(r"\^C")
        term.type("echo status=$?\r")
        term.expect(r"status=130")
        term.type("exit 7\r")
        term.expect(r"\[display resumed\]")
        term.expect(r"RESULT build=5 shell=7")
    assert term.proc.returncode == 0
    assert term.modes_after == term.modes_before


@pytest.mark.timeout(300)
def test_terminal_restored_when_the_daemon_dies_mid_session(
    tmp_path: Path, buildkit_fresh_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    with _child(tmp_path, buildkit_fresh_daemon.address, buildkit_busybox_rootfs) as term:
        term.expect(r"/ # ")
        term.type("echo al''ive\r")
        term.expect(r"alive")
        buildkit_fresh_daemon.kill()
        term.expect(r"(RESULT build=5 shell=None|FAILED \w+)")
    assert term.proc.returncode == 0
    assert term.modes_after == term.modes_before

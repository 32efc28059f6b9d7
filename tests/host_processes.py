"""Watching the host's process table from tests: build containers' processes are host processes.

Tests that cancel a build or release a container check that its process really went away
in the daemon, by a marker in the process's command line.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest


def processes_with(marker: str) -> list[int]:
    """Pids of host processes whose command line contains ``marker`` (containers included)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:  # it exited meanwhile
            continue
        if marker.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


async def until(condition: Callable[[], object], what: str, *, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds: the host's process table has no event to wait on.

    ``timeout`` is a guard against a hang, not a speed limit; past it the test fails with ``what``.
    """
    try:
        async with asyncio.timeout(timeout):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"still not the case after {timeout:g} s: {what}")

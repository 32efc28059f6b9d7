"""Running Python programs (examples, docs blocks) as a user would, from tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

#: How long one example or docs program may run (guards against hangs only).
PROGRAM_TIMEOUT = 240.0


def run_python(
    program: Path, *, env: Mapping[str, str], cwd: Path | None = None, timeout: float = PROGRAM_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """``python program``: no arguments, stdin not a tty, in ``env`` (the whole environment).

    Fails the test with the program's output unless it exits 0; returns its result
    (``stdout`` and ``stderr`` as text) for the test to check.
    """
    proc = subprocess.run(
        [sys.executable, str(program)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{program} exited with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    return proc

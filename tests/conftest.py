"""The suite opts in to the fixtures of :mod:`llblib_async.testing.plugin` (installing the
package does not load them), and runs user programs (examples, docs blocks) the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llblib_async.testing import Registry
from llblib_async.testing.images import PushedImage

pytest_plugins = ["llblib_async.testing.plugin"]

#: How long one example or docs program may run (guards against hangs only).
PROGRAM_TIMEOUT = 240.0

RunProgram = Callable[[Path, Path], subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def program_env(
    buildkit_address: str, buildkit_busybox_image: PushedImage, buildkit_registry: Registry
) -> dict[str, str]:
    """The environment examples and docs programs run in (the convention of examples/):
    ``BUILDKIT_HOST`` = the test daemon, ``BASE_IMAGE`` = busybox on the loopback registry,
    ``REGISTRY`` = that registry's host:port."""
    return {
        **os.environ,
        "BUILDKIT_HOST": buildkit_address,
        "BASE_IMAGE": buildkit_busybox_image.ref,
        "REGISTRY": buildkit_registry.host,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def run_program(program_env: dict[str, str]) -> RunProgram:
    """Run a Python program as a user would (``python prog.py``, no arguments, stdin not a
    tty) in ``cwd``; fail with its output unless it exits 0."""

    def run(program: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, str(program)],
            cwd=cwd,
            env=program_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PROGRAM_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"{program} exited with {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                pytrace=False,
            )
        return proc

    return run

"""The suite opts in to the fixtures of :mod:`llblib_async.testing.plugin` (installing the
package does not load them), and runs user programs (examples, docs blocks) the same way."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from user_programs import run_python

from llblib_async.testing import Registry
from llblib_async.testing.images import PushedImage

pytest_plugins = ["llblib_async.testing.plugin"]

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
        return run_python(program, env=program_env, cwd=cwd)

    return run

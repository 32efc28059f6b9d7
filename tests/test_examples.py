"""Every ``examples/*.py`` runs as a user would run it, against the test daemon.

Discovery is by glob: adding ``examples/<name>.py`` is enough to have it run here.  The
convention (README, "Examples"): a complete program, no arguments, no interaction (stdin
is not a tty here), offline; the daemon comes from ``BUILDKIT_HOST``, a base image from
``BASE_IMAGE`` (busybox on the loopback registry) and a registry to push to from
``REGISTRY``.  Each runs in its own empty working directory.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

RunProgram = Callable[[Path, Path], subprocess.CompletedProcess[str]]  # the conftest fixture run_program

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

pytestmark = pytest.mark.timeout(300)


def test_there_are_examples() -> None:
    assert EXAMPLES_DIR / "demo.py" in EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example: Path, run_program: RunProgram, tmp_path: Path) -> None:
    run_program(example, tmp_path)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_has_a_docstring(example: Path) -> None:
    """Each example says what it shows (a module docstring).  (That it runs offline is proven
    by test_example_runs: this machine has no Docker Hub, so only ``$BASE_IMAGE`` works.)"""
    source = example.read_text()
    assert ast.get_docstring(ast.parse(source)), f"{example.name} has no module docstring"

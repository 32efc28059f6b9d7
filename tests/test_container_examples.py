"""The container examples and the program in docs/containers.md run against a real daemon
(until tests/test_examples.py runs every example and doc block)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from user_programs import run_python

from llblib_async.testing import BuildkitDaemon


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("container.py", ["hello from a State", "a container on adhoc", "exit code 0"]),
        (
            "on_error.py",
            ["build failed (exit code 3)", "$ /bin/sh -c cat /progress.txt  -> exit 0", "half done"],
        ),
        (
            "debug_with_toolbox.py",
            [
                "the build failed (exit code 1); what the debugging found:",
                "changed: config.txt\nchanged: hello.txt\nconfig.txt\nhello.txt\n",
            ],
        ),
        (
            "dockerfile_on_error.py",
            [
                "the build failed with exit code 3:",
                "Dockerfile:3",
                '>>> RUN echo "half done" > /progress.txt && exit 3',
                "$ /bin/sh -c cat /one.txt /progress.txt  -> exit 0",
                "step one\nhalf done\n",
            ],
        ),
    ],
)
def test_examples_run_against_the_daemon(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: object, example: str, expected: list[str]
) -> None:
    """Until tests/test_examples.py runs every example, this runs ours (stdin not a tty)."""
    env = {**os.environ, "BUILDKIT_HOST": buildkit_daemon.address, "BASE_IMAGE": buildkit_busybox_image.ref}  # type: ignore[attr-defined]
    root = Path(__file__).parent.parent
    proc = run_python(root / "examples" / example, env=env)
    for line in expected:
        assert line in proc.stdout, proc.stdout


def test_docs_program_runs_against_the_daemon(
    tmp_path: Path, buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: object
) -> None:
    """The python block of docs/containers.md is a complete program."""
    import re

    doc = (Path(__file__).parent.parent / "docs" / "containers.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", doc, re.S)
    script = tmp_path / "doc.py"
    script.write_text(block)
    env = {**os.environ, "BUILDKIT_HOST": buildkit_daemon.address, "BASE_IMAGE": buildkit_busybox_image.ref}  # type: ignore[attr-defined]
    proc = run_python(script, env=env)
    assert proc.stdout.splitlines() == ["b'hi\\n'", "b'round trip' 0", "4 b'partial\\n'"]

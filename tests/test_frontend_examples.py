"""The frontend examples run as programs against the test daemon (``examples/*.py`` conventions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.images import PushedImage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_dockerfile_build_example(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    out = _run(
        "dockerfile_build.py",
        {
            "BUILDKIT_HOST": buildkit_daemon.address,
            "BASE_IMAGE": buildkit_busybox_image.ref,
            "REGISTRY": buildkit_registry.host,
        },
    )
    assert "hi from a Dockerfile" in out
    assert "context files: ['.dockerignore', 'README']" in out
    assert "pushed " in out
    assert " 3 | >>> RUN exit 3" in out


@pytest.mark.parametrize("with_image", [True, False], ids=["gateway-image", "built-in"])
def test_gateway_frontend_example(
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_image: PushedImage,
    buildkit_dockerfile_frontend_image: PushedImage,
    with_image: bool,
) -> None:
    env = {
        "BUILDKIT_HOST": buildkit_daemon.address,
        "BASE_IMAGE": buildkit_busybox_image.ref,
        "FRONTEND_IMAGE": "",
    }
    if with_image:
        env["FRONTEND_IMAGE"] = buildkit_dockerfile_frontend_image.ref
    out = _run("gateway_frontend.py", env)
    expected = buildkit_dockerfile_frontend_image.ref if with_image else "dockerfile.v0"
    assert f"built by the frontend {expected}" in out
    assert "made in Python" in out

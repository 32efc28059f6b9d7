"""The examples of the progress/CLI issue, run as programs against the test daemon.

(tests/test_examples.py, when it lands, runs every examples/*.py the same way.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from llblib_async.testing import Registry
from llblib_async.testing.images import PushedImage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.daemon


def run_example(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "BUILDKIT_PROGRESS"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_incremental_local_sends_only_the_changed_file(buildkit_address: str) -> None:
    res = run_example("incremental_local.py", {"BUILDKIT_HOST": buildkit_address})
    assert res.returncode == 0, res.stdout + res.stderr
    last = res.stdout.strip().splitlines()[-1]
    first, second = (
        int(x.split(" bytes")[0].replace(",", "")) for x in last.split("uploaded ")[1].split(": ")
    )
    assert first > 2_000_000
    assert second < 20_000


def test_parallel_build_push(
    buildkit_address: str, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    res = run_example(
        "parallel_build_push.py",
        {
            "BUILDKIT_HOST": buildkit_address,
            "BASE_IMAGE": buildkit_busybox_image.ref,
            "REGISTRY": buildkit_registry.host,
        },
    )
    assert res.returncode == 0, res.stdout + res.stderr
    pushed = [line for line in res.stdout.splitlines() if line.startswith("pushed ")]
    assert len(pushed) == 3
    # not a terminal: plain progress on stderr, the three requests labelled, the shared step once
    assert "[api] #" in res.stderr
    lines = res.stderr.splitlines()
    (index,) = {ln.split("#")[1].split()[0] for ln in lines if ln.endswith(" common setup")}
    # one vertex number for it; it ends once when it ran, and at most once per request when an
    # earlier run left it in the cache (each request's solve then reports its own cached run)
    ends = [ln for ln in lines if f"#{index} DONE" in ln or ln.endswith(f"#{index} CACHED")]
    assert sum("DONE" in ln for ln in ends) <= 1
    assert 1 <= len(ends) <= 3
    for name in ("api", "worker", "cli"):
        url = f"http://{buildkit_registry.host}/v2/llblib-example/{name}/tags/list"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert json.load(resp)["tags"] == ["latest"]


def test_parallel_build_push_explains_missing_settings(buildkit_address: str) -> None:
    env = {"BUILDKIT_HOST": buildkit_address, "BASE_IMAGE": "", "REGISTRY": ""}
    res = run_example("parallel_build_push.py", env)
    assert res.returncode == 2
    assert "set BASE_IMAGE" in res.stderr

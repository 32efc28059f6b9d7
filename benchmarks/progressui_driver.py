"""Build (once, cached) the Go progressui driver under benchmarks/progressui/.

Used by tests/test_progress_go.py and benchmarks/bench_progress.py::

    from progressui_driver import build_driver
    exe = build_driver()  # Path of the binary

The binary is cached in ``~/.cache/llblib-async/progressui-<hash>`` keyed by the driver's
sources (main.go, go.mod, go.sum), so a change to them rebuilds it.  Needs the Go
toolchain (``go`` on PATH or /usr/local/go/bin/go); the module versions are those of
go.mod (BuildKit pinned as in tests/llb_oracle).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from llblib_async.testing.binaries import GO_FALLBACKS, default_cache_root

SOURCE = Path(__file__).resolve().parent / "progressui"


def _go() -> str:
    found = shutil.which("go") or next((g for g in GO_FALLBACKS if os.access(g, os.X_OK)), None)
    if found is None:
        raise RuntimeError("the Go toolchain (`go`) is not on PATH nor in /usr/local/go/bin")
    return found


def build_driver() -> Path:
    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update((SOURCE / name).read_bytes())
    exe = default_cache_root() / f"progressui-{digest.hexdigest()[:16]}"
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": (os.environ.get("GOFLAGS", "") + " -mod=mod").strip()}
    tmp = exe.with_suffix(".tmp")
    subprocess.run([_go(), "build", "-trimpath", "-o", str(tmp), "."], cwd=SOURCE, env=env, check=True)
    tmp.replace(exe)
    return exe


if __name__ == "__main__":
    print(build_driver())
    sys.exit(0)

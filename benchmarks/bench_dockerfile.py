"""Dockerfile build benchmark: ``llb.dockerfile`` (llblib_async) vs ``buildctl --frontend dockerfile.v0``.

``nox -s bench -- dockerfile`` (or ``python benchmarks/bench_dockerfile.py [--runs N]
[--files N]``). A private buildkitd is started; both clients build the same Dockerfile
(``FROM scratch``, ``COPY . /ctx/``, ``LABEL``, ``CMD``) on the same context directory of
``--files`` small files (default 2000) with the built-in ``dockerfile.v0`` frontend and no
exporter. The first build of each fills the cache; the timed runs are warm (the frontend
runs, the context is re-checked, every step is cached), alternating python and go,
``--runs`` each (default 5). The last line is ``dockerfile ratio (python/go): X`` (median
wall times; the Python time includes connecting, the Go time starting ``buildctl``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import llblib_async
from llblib_async import llb
from llblib_async.testing import BuildkitDaemon

DOCKERFILE = 'FROM scratch\nCOPY . /ctx/\nLABEL bench=dockerfile\nCMD ["/nothing"]\n'


async def python_build(address: str, context: Path) -> float:
    started = time.perf_counter()
    async with llblib_async.connect(address) as client:
        await client.solve(llb.dockerfile(DOCKERFILE, context=context), evaluate=True)
    return time.perf_counter() - started


def go_build(buildctl: str, address: str, context: Path, dockerfile_dir: Path) -> float:
    started = time.perf_counter()
    argv = [
        buildctl, "--addr", address, "build", "--frontend", "dockerfile.v0",
        "--local", f"context={context}", "--local", f"dockerfile={dockerfile_dir}",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"buildctl failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp, BuildkitDaemon.start() as daemon:
        context = Path(tmp) / "context"
        for i in range(args.files):
            sub = context / f"d{i % 20}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i}.txt").write_text(f"file {i}\n" * 8)
        dockerfile_dir = Path(tmp) / "dockerfile"
        dockerfile_dir.mkdir()
        (dockerfile_dir / "Dockerfile").write_text(DOCKERFILE)
        buildctl = str(daemon.binaries.buildkitd.parent / "buildctl")
        asyncio.run(python_build(daemon.address, context))  # fill the cache
        go_build(buildctl, daemon.address, context, dockerfile_dir)
        py_times, go_times = [], []
        for _ in range(args.runs):
            py_times.append(asyncio.run(python_build(daemon.address, context)))
            go_times.append(go_build(buildctl, daemon.address, context, dockerfile_dir))
        py, go = statistics.median(py_times), statistics.median(go_times)
        print(f"warm Dockerfile build, {args.files} context files, {args.runs} runs each")
        print(f"python median {py:.3f}s  go median {go:.3f}s")
        print(f"dockerfile ratio (python/go): {py / go:.2f}")


if __name__ == "__main__":
    main()

"""Containers on the build worker: first-byte latency against an LLB exec, and stream throughput.

Side by side on one private buildkitd (started here, with the busybox rootfs the tests
use), in one session:

* **first byte**: from ``session.do`` to the first output byte of ``echo hi`` run
  (a) in a container (``solver.container``) and (b) as an LLB exec (``root.run``,
  ``ignore_cache`` so it runs every time; the byte is read from the progress stream).
  The root filesystem is solved once beforehand, so both measure the run, not the root;
* **stdin**: bytes/s written to ``cat > /dev/null`` in an open container;
* **stdout**: bytes/s read from ``dd if=/dev/zero bs=1M`` in an open container (the
  daemon sends what each read of the process's pipe gives, so a writer of small blocks,
  such as busybox ``head``, makes more and smaller messages).

Medians of ``--runs`` runs. The last line is::

    container: first-byte ratio (container/exec)=X stdin=Y MiB/s stdout=Z MiB/s

Run with ``nox -s bench -- container`` (``-- container --runs 9 --mib 512``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import llblib_async
from llblib_async import Result, Solver, StatusUpdate, llb
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.rootfs import busybox_rootfs


class FirstLog:
    """A progress sink noting when the first log byte of any vertex arrives."""

    def __init__(self) -> None:
        self.at: float | None = None

    def update(self, update: StatusUpdate) -> None:
        if self.at is None and any(chunk.data for chunk in update.logs):
            self.at = time.perf_counter()

    def close(self) -> None:
        pass


async def measure(address: str, rootfs: Path, runs: int, mib: int) -> tuple[float, float, float, float]:
    root = llb.scratch().copy(llb.local(rootfs), "/", "/")
    solver = Solver()
    sink = FirstLog()
    container_times: list[float] = []
    exec_times: list[float] = []
    stdin_rates: list[float] = []
    stdout_rates: list[float] = []
    size = mib << 20
    payload = b"\0" * size
    async with llblib_async.connect(address) as client, solver.session(client, progress=sink) as session:
        await session.do(solver.build(root, evaluate=True))  # warm: the root is solved once
        for i in range(runs + 1):
            first: list[float] = []

            async def on_output(data: bytes, first: list[float] = first) -> None:
                if not first:
                    first.append(time.perf_counter())

            start = time.perf_counter()
            await session.do(solver.container(root, ["echo", "hi"], stdout=on_output))
            if i:
                container_times.append(first[0] - start)

            sink.at = None
            start = time.perf_counter()
            await session.do(solver.build(root.run(["echo", "hi"], ignore_cache=True).root, evaluate=True))
            assert sink.at is not None
            if i:
                exec_times.append(sink.at - start)

        async def streams(result: Result) -> None:
            for _ in range(runs):
                async with result.container() as ctr:
                    start = time.perf_counter()
                    await ctr.run(["/bin/sh", "-c", "cat > /dev/null"], stdin=payload)
                    stdin_rates.append(mib / (time.perf_counter() - start))
                async with result.container() as ctr:
                    start = time.perf_counter()
                    await ctr.run(["dd", "if=/dev/zero", "bs=1048576", f"count={mib}"], stdout="discard")
                    stdout_rates.append(mib / (time.perf_counter() - start))

        await session.do(solver.build(root, on_result=streams))
    return (
        statistics.median(container_times),
        statistics.median(exec_times),
        statistics.median(stdin_rates),
        statistics.median(stdout_rates),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (median)")
    parser.add_argument("--mib", type=int, default=256, help="MiB sent through stdin and stdout")
    parser.add_argument("--addr", help="an already running buildkitd (default: start a private one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = busybox_rootfs(Path(tmp) / "rootfs")
        if args.addr:
            result = asyncio.run(measure(args.addr, rootfs, args.runs, args.mib))
        else:
            with BuildkitDaemon.start() as daemon:
                print(f"buildkitd {daemon.version} ({daemon.snapshotter} snapshotter) at {daemon.address}")
                result = asyncio.run(measure(daemon.address, rootfs, args.runs, args.mib))
    container_s, exec_s, stdin_rate, stdout_rate = result
    print(f"first byte of 'echo hi' (median of {args.runs}): container {container_s * 1000:.1f} ms, "
          f"LLB exec {exec_s * 1000:.1f} ms")  # fmt: skip
    print(f"stdin {stdin_rate:.0f} MiB/s, stdout {stdout_rate:.0f} MiB/s ({args.mib} MiB each)")
    print(
        f"container: first-byte ratio (container/exec)={container_s / exec_s:.2f} "
        f"stdin={stdin_rate:.0f} MiB/s stdout={stdout_rate:.0f} MiB/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

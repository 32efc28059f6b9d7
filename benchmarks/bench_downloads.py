"""Concurrent downloads on one session: 16 at once vs the slowest single one.

``nox -s bench -- downloads`` (or ``python benchmarks/bench_downloads.py [options]``).
A private buildkitd is started; one :class:`~llblib_async.Solver` session runs
``--count`` (default 16) requests, each exporting its own result to the client: even
ones with ``LocalExport`` (a directory), odd ones with ``TarExport`` (a tar file). Each
result is ``llb.scratch()`` with one file of ``--size-kib`` KiB (default 4096) of
random bytes unique to the request, built once beforehand so the runs measure the
export (the daemon's cache is kept), not the build.

Per run (``--runs``, default 3), in the same session:

* **single**: each request alone, one after the other; the slowest of them is the
  reference ("the slowest single one");
* **concurrent**: all requests at once (``asyncio.gather`` of ``session.do``).

Every download is checked (file content) after every run. The medians over the runs
are printed and, as the last line, ``downloads ratio (concurrent/slowest single): X``
(goal: at most 1.2). The sum of the single times is printed too: what the old
serialised export phases approached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import llblib_async
from llblib_async import Request, Solver, llb
from llblib_async.testing import BuildkitDaemon


def make_requests(solver: Solver, count: int, size: int, out: Path) -> list[tuple[Request, Path, bytes]]:
    requests = []
    for i in range(count):
        payload = i.to_bytes(4, "little") + os.urandom(size - 4)
        state = llb.scratch().file(llb.mkfile("/payload", payload))
        export: llblib_async.LocalExport | llblib_async.TarExport
        if i % 2 == 0:
            dest = out / f"dir{i}"
            export = llblib_async.LocalExport(dest)
        else:
            dest = out / f"file{i}.tar"
            export = llblib_async.TarExport(dest)
        requests.append((solver.build(state, label=f"dl{i}", exports=[export]), dest, payload))
    return requests


def check(dest: Path, payload: bytes) -> None:
    if dest.suffix == ".tar":
        with tarfile.open(dest) as tar:
            f = tar.extractfile("payload")
            assert f is not None
            got = f.read()
        dest.unlink()
    else:
        got = (dest / "payload").read_bytes()
        shutil.rmtree(dest)
    if got != payload:
        raise SystemExit(f"wrong download in {dest}")


def daemon_cpu(pid: int) -> float:
    """CPU seconds (user + system) the daemon process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(daemon: BuildkitDaemon, args: argparse.Namespace, base: Path) -> int:
    solver = Solver()
    requests = make_requests(solver, args.count, args.size_kib * 1024, base)
    singles: list[float] = []
    sums: list[float] = []
    concurrents: list[float] = []
    private: list[int] = []
    async with llblib_async.connect(daemon.address) as client, solver.session(client) as session:
        # build every result once (no export), so the runs measure the downloads
        await asyncio.gather(*(session.do(solver.build(r.state or llb.scratch())) for r, _, _ in requests))
        for run in range(args.runs):
            times = []
            scpu0, sdcpu0 = time.process_time(), daemon_cpu(daemon.pid)
            for request, dest, payload in requests:
                t0 = time.perf_counter()
                await session.do(request)
                times.append(time.perf_counter() - t0)
                check(dest, payload)
            scpu, sdcpu = time.process_time() - scpu0, daemon_cpu(daemon.pid) - sdcpu0
            before = session.export_sessions
            cpu0, dcpu0 = time.process_time(), daemon_cpu(daemon.pid)
            t0 = time.perf_counter()
            await asyncio.gather(*(session.do(r) for r, _, _ in requests))
            elapsed = time.perf_counter() - t0
            cpu, dcpu = time.process_time() - cpu0, daemon_cpu(daemon.pid) - dcpu0
            private.append(session.export_sessions - before)
            for _, dest, payload in requests:
                check(dest, payload)
            singles.append(max(times))
            sums.append(sum(times))
            concurrents.append(elapsed)
            print(
                f"  run {run + 1}: slowest single {max(times):6.3f}s  (sum of singles {sum(times):6.3f}s;"
                f" CPU: client {scpu:5.2f}s, daemon {sdcpu:5.2f}s)"
                f"   {args.count} concurrent {elapsed:6.3f}s (CPU: client {cpu:5.2f}s, daemon {dcpu:5.2f}s)"
                f"   private export sessions {private[-1]}",
                flush=True,
            )
    single, concurrent = statistics.median(singles), statistics.median(concurrents)
    print(
        f"\nmedian of {args.runs} runs: slowest single {single:.3f}s, sum of singles "
        f"{statistics.median(sums):.3f}s, {args.count} concurrent {concurrent:.3f}s"
    )
    print(f"downloads ratio (concurrent/slowest single): {concurrent / single:.2f}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--count", type=int, default=16, help="concurrent downloads (default 16)")
    parser.add_argument(
        "--size-kib", type=int, default=4096, help="size of each download in KiB (default 4096)"
    )
    parser.add_argument("--tmpdir", default="", help="directory for the downloads (default /var/tmp)")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-downloads-", dir=args.tmpdir or "/var/tmp"))
    try:
        with BuildkitDaemon.start() as daemon:
            print(
                f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; buildkitd {daemon.version}; "
                f"{args.count} downloads of {args.size_kib} KiB (half LocalExport, half TarExport)"
            )
            return asyncio.run(bench(daemon, args, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Concurrent downloads on one session: 16 at once vs the slowest single one.

``nox -s bench -- downloads`` (or ``python benchmarks/bench_downloads.py [options]``).
A private buildkitd is started; one :class:`~llblib_async.Solver` session runs
``--count`` (default 16) requests, each downloading its own result. Every result is
the same content (``--size-kib``, default 4096 KiB of random bytes, from one local
directory the session sends once) plus a small file unique to the request, built once
beforehand, so the runs measure the downloads, not the builds.

Two scenarios:

``files``
    even requests ``LocalExport`` (a directory), odd ones ``TarExport`` (a tar file):
    limited by CPU (the daemon's and ours), as on any machine with fewer cores than
    downloads.
``slow-sink``
    each request streams an OCI tarball (``OCIExport`` to a
    :class:`~llblib_async.attachables.filesend.StreamTarget`) into a consumer that takes
    ``--sink-mibps`` MiB/s (default 8): downloads limited by where the bytes go (a slow
    disk, a network share, an upload), the case where concurrency pays whatever the
    core count.

Per run (``--runs``, default 3), in the same session: each request alone, one after
the other (the slowest is "the slowest single one"), then all at once
(``asyncio.gather`` of ``session.do``), then all at once again with downloads
*queued* on the session's own route (``ExportRoute.allow_private = False``: what the
pipeline did before private export sessions). Every download is checked after every
run. Client and daemon CPU seconds of the concurrent phase are shown, to tell a
CPU-bound run from a latency-bound one. ``--no-history`` makes the requests with
``record_history=False``: the daemon then writes no build-history record after each
request (~0.1 s each on an idle test machine, more under load; they queue when many
requests end together). Medians over the runs are printed and, as the
last line, ``downloads ratio (concurrent/slowest single): files=X slow-sink=Y``
(the goal is at most 1.2).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import llblib_async
from llblib_async import Request, Solver, llb
from llblib_async._pipeline.exports import ExportRoute
from llblib_async.attachables.filesend import ByteSink, StreamTarget
from llblib_async.testing import BuildkitDaemon

SCENARIOS = ("files", "slow-sink")


def daemon_cpu(pid: int) -> float:
    """CPU seconds (user + system) the daemon process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SlowSink:
    """A consumer taking ``rate`` bytes per second."""

    def __init__(self, rate: float, into: bytearray) -> None:
        self.rate = rate
        self.into = into

    async def send(self, item: bytes) -> None:
        await asyncio.sleep(len(item) / self.rate)
        self.into += item

    async def aclose(self) -> None:
        pass


@dataclass
class Download:
    request: Request
    check: Callable[[], None]


def file_downloads(
    solver: Solver, base: llb.State, count: int, out: Path, payload: bytes, history: bool
) -> list[Download]:
    downloads = []
    for i in range(count):
        state = base.file(llb.mkfile("/id", str(i).encode()))
        if i % 2 == 0:
            dest = out / f"dir{i}"

            def check(dest: Path = dest, i: int = i) -> None:
                ok = (dest / "id").read_text() == str(i) and (dest / "payload").read_bytes() == payload
                shutil.rmtree(dest)
                if not ok:
                    raise SystemExit(f"wrong download in {dest}")

            request = solver.build(
                state, label=f"dl{i}", exports=[llblib_async.LocalExport(dest)], record_history=history
            )
        else:
            dest = out / f"file{i}.tar"

            def check(dest: Path = dest, i: int = i) -> None:
                with tarfile.open(dest) as tar:
                    got = {n: f.read() for n in ("id", "payload") if (f := tar.extractfile(n)) is not None}
                dest.unlink()
                if got != {"id": str(i).encode(), "payload": payload}:
                    raise SystemExit(f"wrong download in {dest}")

            request = solver.build(
                state, label=f"dl{i}", exports=[llblib_async.TarExport(dest)], record_history=history
            )
        downloads.append(Download(request, check))
    return downloads


def sink_downloads(solver: Solver, base: llb.State, count: int, rate: float, history: bool) -> list[Download]:
    downloads = []
    for i in range(count):
        state = base.with_platform(llb.default_platform()).file(llb.mkfile("/id", str(i).encode()))
        received: dict[int, bytearray] = {}

        async def open_sink(
            metadata: Mapping[str, str], received: dict[int, bytearray] = received
        ) -> ByteSink:
            received[0] = bytearray()
            return SlowSink(rate, received[0])

        def check(received: dict[int, bytearray] = received) -> None:
            with tarfile.open(fileobj=io.BytesIO(bytes(received.pop(0)))) as tar:
                if "index.json" not in tar.getnames():
                    raise SystemExit("not an OCI layout tarball")

        export = llblib_async.OCIExport(StreamTarget(open_sink), name=f"bench/dl:{i}")
        request = solver.build(state, label=f"dl{i}", exports=[export], record_history=history)
        downloads.append(Download(request, check))
    return downloads


async def timed(session: llblib_async.Session, downloads: list[Download]) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(session.do(d.request) for d in downloads))
    elapsed = time.perf_counter() - t0
    for d in downloads:
        d.check()
    return elapsed


async def bench(daemon: BuildkitDaemon, args: argparse.Namespace, base_dir: Path) -> dict[str, float]:
    payload = os.urandom(args.size_kib * 1024)
    ctx = base_dir / "ctx"
    ctx.mkdir()
    (ctx / "payload").write_bytes(payload)
    solver = Solver()
    base = llb.scratch().copy(solver.local(ctx), "/", "/")
    ratios: dict[str, float] = {}
    async with llblib_async.connect(daemon.address) as client, solver.session(client) as session:
        for scenario in args.scenarios:
            if scenario == "files":
                downloads = file_downloads(solver, base, args.count, base_dir, payload, not args.no_history)
                what = f"{args.count} downloads of {args.size_kib} KiB (half LocalExport, half TarExport)"
            else:
                rate = args.sink_mibps * (1 << 20)
                downloads = sink_downloads(solver, base, args.count, rate, not args.no_history)
                what = (
                    f"{args.count} OCI tarballs of ~{args.size_kib} KiB into sinks taking"
                    f" {args.sink_mibps} MiB/s"
                )
            print(f"\n{scenario}: {what}", flush=True)
            # build every result once (no export), so the runs measure the downloads
            await asyncio.gather(
                *(session.do(solver.build(d.request.state or llb.scratch())) for d in downloads)
            )
            singles, concurrents, queued = [], [], []
            for run in range(args.runs):
                times = [await timed(session, [d]) for d in downloads]
                before = session.export_sessions
                cpu0, dcpu0 = time.process_time(), daemon_cpu(daemon.pid)
                elapsed = await timed(session, downloads)
                cpu, dcpu = time.process_time() - cpu0, daemon_cpu(daemon.pid) - dcpu0
                private = session.export_sessions - before
                ExportRoute.allow_private = False
                try:
                    queued_elapsed = await timed(session, downloads)
                finally:
                    ExportRoute.allow_private = True
                singles.append(max(times))
                concurrents.append(elapsed)
                queued.append(queued_elapsed)
                print(
                    f"  run {run + 1}: slowest single {max(times):6.3f}s   {args.count} concurrent"
                    f" {elapsed:6.3f}s (CPU: client {cpu:5.2f}s, daemon {dcpu:5.2f}s; {private} private"
                    f" sessions)   queued as before {queued_elapsed:6.3f}s",
                    flush=True,
                )
            single, concurrent = statistics.median(singles), statistics.median(concurrents)
            ratios[scenario] = concurrent / single
            print(
                f"  median of {args.runs} runs: slowest single {single:.3f}s, {args.count} concurrent "
                f"{concurrent:.3f}s (x{concurrent / single:.2f}), queued as before "
                f"{statistics.median(queued):.3f}s (x{statistics.median(queued) / single:.2f})"
            )
    return ratios


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--count", type=int, default=16, help="concurrent downloads (default 16)")
    parser.add_argument(
        "--size-kib", type=int, default=4096, help="size of each download in KiB (default 4096)"
    )
    parser.add_argument(
        "--sink-mibps", type=float, default=8.0, help="slow-sink consumer speed in MiB/s (default 8)"
    )
    parser.add_argument(
        "--scenarios", type=lambda s: s.split(","), default=list(SCENARIOS), help="files,slow-sink"
    )
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="record_history=False: the daemon writes no build-history record per request",
    )
    parser.add_argument("--tmpdir", default="", help="directory for the downloads (default /var/tmp)")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-downloads-", dir=args.tmpdir or "/var/tmp"))
    try:
        with BuildkitDaemon.start() as daemon:
            print(f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; buildkitd {daemon.version}")
            ratios = asyncio.run(bench(daemon, args, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    shown = " ".join(f"{n}={r:.2f}" for n, r in ratios.items())
    print(f"downloads ratio (concurrent/slowest single): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

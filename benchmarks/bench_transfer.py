"""Transfer benchmarks: local-context upload and ``local`` exporter download, llblib_async vs ``buildctl``.

``nox -s bench -- upload`` / ``nox -s bench -- download`` (or ``python
benchmarks/bench_transfer.py upload|download [options]``; with neither, both run).
A private buildkitd is started for the run; both clients talk to it over its unix
socket and build the *same* LLB graph: ``llb.scratch().copy(llb.local(dir, name="ctx"),
"/", "/ctx/")``, marshaled by llblib_async and piped to ``buildctl build
--local ctx=DIR`` for Go.

Datasets (created once in a temporary directory under /var/tmp):

* ``big``   — one file of ``--big-mib`` MiB (default 1024) of random-ish bytes;
* ``small`` — ``--small-files`` files (default 20000) of ``--small-size`` bytes
  (default 1024) spread over ``--small-dirs`` directories (default 100).

upload: the build cache is pruned (``prune --all``) before every run, so every run
transfers the whole context; no exporter.

download: the graph is built once (cache kept); every run exports it with the
``local`` exporter into a fresh directory. The local source is still synced each run
(the daemon re-checks the context: STATs only, no file data), on both sides alike.

Runs alternate python and go on the same daemon, ``--runs`` each (default 3); the
medians are printed and, as the last line, ``<kind> ratio (python/go): big=X
small=Y`` (python median / go median wall time; the Python time includes connecting,
the Go time starting the ``buildctl`` process). ``--chunk KIB`` sets the Python DATA
packet size for the upload; ``--profile`` additionally cProfiles one Python run of each
dataset and prints its top functions.

Everything lives under ``/var/tmp`` by default (datasets, exports, the daemon's
state), so the small datasets measure the disk as much as the transfer: on ext4
without a journal (this VM's root) inodes freed less than 60 s ago (300 s while their
inode-table block is dirty) are skipped when files are created, so creating 20,000
files right after a prune or an export was deleted spends seconds in the kernel
(``ext4_create`` -> ``recently_deleted``), for the daemon and the client alike, and
the small runs varied from 5 s to 50 s for both clients. ``--tmpdir /dev/shm`` takes
the disk out (runs within ~5% of each other) and compares the two clients' own work.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import llblib_async
from llblib_async import llb
from llblib_async.testing import BuildkitDaemon

LOCAL_NAME = "ctx"
DATASETS = ("big", "small")
KINDS = ("upload", "download")


def make_datasets(
    base: Path, big_mib: int, small_files: int, small_dirs: int, small_size: int
) -> dict[str, Path]:
    big = base / "big"
    big.mkdir()
    block = os.urandom(1 << 20)
    with open(big / "big.bin", "wb") as f:
        for i in range(big_mib):
            # vary every MiB so nothing downstream can dedupe it
            f.write(i.to_bytes(8, "little") + block[8:])
    small = base / "small"
    small.mkdir()
    payload = os.urandom(small_size)
    for d in range(small_dirs):
        (small / f"d{d:03}").mkdir()
    for i in range(small_files):
        (small / f"d{i % small_dirs:03}" / f"f{i:05}").write_bytes(
            payload[: small_size - 8] + i.to_bytes(8, "little")
        )
    os.sync()
    return {"big": big, "small": small}


def graph(ctx: Path) -> llb.State:
    return llb.scratch().copy(llb.local(ctx, name=LOCAL_NAME), "/", "/ctx/")


class Bench:
    def __init__(self, daemon: BuildkitDaemon, workdir: Path) -> None:
        self.daemon = daemon
        self.workdir = workdir
        self.buildctl = str(daemon.binaries.buildkitd.parent / "buildctl")
        self._n = 0

    # --- helpers ------------------------------------------------------------------------------
    def fresh_dest(self) -> Path:
        self._n += 1
        return self.workdir / f"out{self._n}"

    def prune(self) -> None:
        subprocess.run(
            [self.buildctl, "--addr", self.daemon.address, "prune", "--all"], check=True, capture_output=True
        )

    async def py_solve(self, ctx: Path, dest: Path | None) -> None:
        exports = [llblib_async.LocalExport(dest)] if dest is not None else []
        async with llblib_async.connect(self.daemon.address) as client:
            await client.solve(graph(ctx), exports=exports)

    def py_run(self, ctx: Path, dest: Path | None, *, profile: str = "") -> float:
        t0 = time.perf_counter()
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(self.py_solve(ctx, dest))
            prof.disable()
            elapsed = time.perf_counter() - t0
            out = Path(tempfile.gettempdir()) / f"bench_transfer_{profile}.prof"
            prof.dump_stats(out)
            print(f"\ncProfile of one python run ({profile}, {elapsed:.2f}s profiled), saved to {out}:")
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return elapsed
        asyncio.run(self.py_solve(ctx, dest))
        return time.perf_counter() - t0

    def go_run(self, ctx: Path, dest: Path | None) -> float:
        definition = llb.marshal(graph(ctx)).to_bytes()
        cmd = [
            self.buildctl,
            "--addr",
            self.daemon.address,
            "build",
            "--progress",
            "plain",
            "--local",
            f"{LOCAL_NAME}={ctx}",
        ]
        if dest is not None:
            cmd += ["--output", f"type=local,dest={dest}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, input=definition, capture_output=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"buildctl failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-3000:]}")
        return elapsed


def check_tree(src: Path, dest: Path) -> None:
    """Cheap check that an export is complete: same number of files and bytes."""

    def summary(p: Path) -> tuple[int, int]:
        n = size = 0
        for dirpath, _, files in os.walk(p):
            for f in files:
                n += 1
                size += os.lstat(os.path.join(dirpath, f)).st_size
        return n, size

    got, want = summary(dest / "ctx"), summary(src)
    if got != want:
        sys.exit(f"export of {src} incomplete: {got} != {want} (files, bytes)")


def run(kind: str, args: argparse.Namespace) -> int:
    if args.tmpdir:
        # the daemon's state too (llblib_async.testing honours $LLBLIB_TEST_TMPDIR)
        os.environ["LLBLIB_TEST_TMPDIR"] = args.tmpdir
    base = Path(tempfile.mkdtemp(prefix="bench-transfer-", dir=args.tmpdir or "/var/tmp"))
    try:
        t0 = time.perf_counter()
        data = make_datasets(base, args.big_mib, args.small_files, args.small_dirs, args.small_size)
        print(
            f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
            f"datasets: big = 1 file of {args.big_mib} MiB, "
            f"small = {args.small_files} files of {args.small_size} B in {args.small_dirs} dirs "
            f"(made in {time.perf_counter() - t0:.1f}s)"
        )
        if args.chunk:
            from llblib_async._fsutil import wire

            wire.DATA_CHUNK = args.chunk * 1024
            from llblib_async.attachables import filesync

            filesync.FileSyncProvider.__init__.__kwdefaults__["chunk_size"] = args.chunk * 1024  # type: ignore[index]
            print(f"python DATA chunk: {args.chunk} KiB")
        with BuildkitDaemon.start() as daemon:
            print(f"buildkitd {daemon.version} ({daemon.snapshotter} snapshotter) at {daemon.address}")
            bench = Bench(daemon, base)
            results: dict[str, tuple[list[float], list[float]]] = {}
            for name in args.datasets:
                ctx = data[name]
                py_times: list[float] = []
                go_times: list[float] = []
                if kind == "download":
                    bench.prune()
                    asyncio.run(bench.py_solve(ctx, None))  # build once
                for i in range(args.runs):
                    order: list[tuple[str, Callable[[Path, Path | None], float]]] = [
                        ("python", bench.py_run),
                        ("go", bench.go_run),
                    ]
                    if i % 2:
                        order.reverse()
                    for who, fn in order:
                        dest = bench.fresh_dest() if kind == "download" else None
                        if kind == "upload":
                            bench.prune()
                        elapsed = fn(ctx, dest)
                        (py_times if who == "python" else go_times).append(elapsed)
                        print(f"  {kind} {name} run {i + 1} {who:6} {elapsed:7.2f}s", flush=True)
                        if dest is not None:
                            check_tree(ctx, dest)
                            shutil.rmtree(dest)
                if args.profile:
                    dest = bench.fresh_dest() if kind == "download" else None
                    if kind == "upload":
                        bench.prune()
                    bench.py_run(ctx, dest, profile=f"{kind}-{name}")
                    if dest is not None:
                        shutil.rmtree(dest)
                results[name] = (py_times, go_times)
            print(f"\n{kind}: median wall time of {args.runs} runs")
            ratios: dict[str, float] = {}
            for name, (py_times, go_times) in results.items():
                py, go = statistics.median(py_times), statistics.median(go_times)
                ratios[name] = py / go
                size = (args.big_mib << 20) if name == "big" else args.small_files * args.small_size
                print(
                    f"  {name:5}  python {py:7.2f}s ({size / py / (1 << 20):7.1f} MiB/s)   "
                    f"go {go:7.2f}s ({size / go / (1 << 20):7.1f} MiB/s)   python/go {py / go:.2f}"
                )
            shown = " ".join(f"{n}={r:.2f}" for n, r in ratios.items())
            print(f"{kind} ratio (python/go): {shown}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def main(kind: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per client and dataset (default 3)")
    parser.add_argument(
        "--big-mib", type=int, default=1024, help="size of the big file in MiB (default 1024)"
    )
    parser.add_argument(
        "--small-files", type=int, default=20_000, help="number of small files (default 20000)"
    )
    parser.add_argument(
        "--small-dirs", type=int, default=100, help="directories of the small files (default 100)"
    )
    parser.add_argument(
        "--small-size", type=int, default=1024, help="size of a small file in bytes (default 1024)"
    )
    parser.add_argument(
        "--datasets", type=lambda s: s.split(","), default=list(DATASETS), help="comma-separated: big,small"
    )
    parser.add_argument("--chunk", type=int, default=0, help="python upload DATA packet size in KiB")
    parser.add_argument(
        "--tmpdir",
        default="",
        help="directory for the datasets, exports and the daemon's state (default /var/tmp; "
        "e.g. /dev/shm to take the disk out of the measurement)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one extra python run per dataset")
    args = parser.parse_args(argv)
    return run(kind, args)


if __name__ == "__main__":
    # ``bench_transfer.py [upload|download] [options]``; without a kind: upload, then download.
    kinds = [a for a in sys.argv[1:2] if a in KINDS] or list(KINDS)
    rest = sys.argv[2:] if sys.argv[1:2] == kinds[:1] and len(kinds) == 1 else sys.argv[1:]
    sys.exit(max(main(k, rest) for k in kinds))

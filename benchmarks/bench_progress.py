"""Progress benchmark: the model and the Textual tty display against Go's ``progressui``.

``nox -s bench -- progress`` (or ``python benchmarks/bench_progress.py``) measures, on the
recorded busy build in tests/progress_streams/busy.jsonl.gz (16 concurrent requests,
three steps each printing a line every 20 ms, the busybox image shared by all):

* **throughput**: ``--messages`` (default 1,000,000) Status messages -- the busy stream
  again and again, its vertex digests renamed in each repetition so every repetition is
  new work -- fed as fast as they go into ``TTYProgress`` (the ``ProgressModel`` and the
  Textual app, headless, repainting at its 10 Hz); messages per second and the process's
  peak RSS.  Go: benchmarks/progressui (``progressui.NewDisplay`` in tty mode on a
  pseudo-terminal whose other end is drained) fed the same messages the same way.
* **replay**: the busy stream fed at its recorded rate (``--replays`` times in a row) to
  ``TTYProgress`` drawing on a real pseudo-terminal (Textual's inline Linux driver), and
  the CPU time of the process divided by the wall time: the share of one core the
  display takes at a real build's rate.  Go: the same replay in its tty mode.

Each Python measurement runs in its own process (clean peak RSS; the replay with its
stdio on a pty).  The last line printed is::

    progress: tty X msgs/s (go Y msgs/s), cpu at replay Z% of a core, peak W MiB
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import pty
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from llblib_async.progress import LogChunk, StatusUpdate

HERE = Path(__file__).resolve().parent
STREAM = HERE.parent / "tests" / "progress_streams" / "busy.jsonl.gz"


def _load() -> tuple[list[Any], list[float]]:
    from llblib_async.progress.rawjson import from_json

    updates, times = [], []
    with gzip.open(STREAM, "rt") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                times.append(float(obj.get("_t", 0.0)))
                updates.append(from_json(obj))
    return updates, times


def _renamed(update: Any, sfx: str) -> Any:
    """The update with every digest suffixed ``sfx`` (``-r<repetition>``, as the Go
    driver's copyFor names them; ``""``: the update as recorded).

    Like copyFor, a fresh copy of every vertex, row, chunk and warning with its digest
    renamed, each time; only the empty parts are not walked (copyFor's loops skip them too).
    """
    if not sfx:
        return update
    vertices, statuses, logs, warnings = update.vertices, update.statuses, update.logs, update.warnings
    if vertices:
        vertices = tuple(
            [replace(v, digest=v.digest + sfx, inputs=tuple([i + sfx for i in v.inputs])) for v in vertices]
        )
    if statuses:
        statuses = tuple([replace(s, vertex=s.vertex + sfx) for s in statuses])
    if len(logs) == 1:  # the common message: one chunk
        c = logs[0]
        logs = (LogChunk(c.vertex + sfx, c.stream, c.data, c.timestamp),)
    elif logs:
        logs = tuple([LogChunk(c.vertex + sfx, c.stream, c.data, c.timestamp) for c in logs])
    if warnings:
        warnings = tuple([replace(w, vertex=w.vertex + sfx) for w in warnings])
    return StatusUpdate(update.request, vertices, statuses, logs, warnings)


def _suffix(rep: int) -> str:
    return f"-r{rep}" if rep else ""


def _messages(updates: list[object], total: int) -> Iterator[object]:
    """``total`` messages: the stream, then again renamed, and so on (Go's driver feeds the same)."""
    for rep in range(-(-total // len(updates))):
        sfx = _suffix(rep)
        for update in updates[: total - rep * len(updates)]:
            yield _renamed(update, sfx)


async def _throughput(total: int) -> dict[str, float]:
    from llblib_async.progress.tui import TTYProgress

    updates, _ = _load()
    async with TTYProgress(headless=True, size=(160, 50)) as tty:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i, update in enumerate(_messages(updates, total)):
            tty.update(update)  # type: ignore[arg-type]
            if i % 1000 == 999:
                await asyncio.sleep(0)  # the app's frames run in between, as in a real session
        assert tty.app is not None
        tty.app.repaint()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        frames = tty.app.frames
    return {
        "messages": total,
        "seconds": elapsed,
        "msgs_per_s": total / elapsed,
        "cpu_seconds": cpu,
        "frames": frames,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def _replay(replays: int, rate: float, sink: str = "tty") -> dict[str, float]:
    """The busy stream at its recorded rate into ``sink``: ``tty`` (the display, on the
    pty this process runs on), ``model`` (a ``ProgressModel`` alone) or ``none`` (the
    replay loop alone): the last two say how much of the replay's share is not the display's."""
    from llblib_async.progress import ProgressModel
    from llblib_async.progress.tui import ProgressView, TTYProgress

    updates, times = _load()
    span = times[-1] + 0.1
    tty = TTYProgress(inline=True, refresh_rate=rate)
    feeds: dict[str, Callable[[Any], object]] = {
        "tty": tty.update,
        "model": ProgressModel(merge_groups=True).apply,
        "none": lambda update: None,
    }
    feed = feeds[sink]
    async with tty if sink == "tty" else contextlib.nullcontext(tty):
        loop = asyncio.get_running_loop()
        cpu0, t0 = time.process_time(), loop.time()
        n = 0
        for rep in range(replays):
            for k, update in enumerate(updates):
                delay = t0 + rep * span + times[k] - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the recorded rate
                feed(_renamed(update, _suffix(rep)))
                n += 1
        elapsed, cpu = loop.time() - t0, time.process_time() - cpu0
        frames = tty.app.frames if tty.app is not None else 0
        layouts = tty.app.query_one("#panes", ProgressView).layouts if tty.app is not None else 0
    return {
        "messages": n,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "cpu_share": cpu / elapsed,
        "frames": frames,
        "layouts": layouts,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(args: list[str], *, on_pty: bool) -> dict[str, float]:
    """Run this file's ``--phase`` in a new process; on a pty when the display needs a terminal."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, *args, "--result", str(out)]
        if not on_pty:
            subprocess.run(cmd, check=True)
        else:
            master, slave = pty.openpty()
            os.set_blocking(master, False)
            env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
            proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
            os.close(slave)
            while proc.poll() is None:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        os.read(master, 1 << 16)
                    except OSError:
                        break
            proc.wait()
            os.close(master)
            if proc.returncode:
                raise SystemExit(f"the replay child failed with {proc.returncode}")
        result: dict[str, float] = json.loads(out.read_text())
        return result


def _go(args: list[str]) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    from progressui_driver import build_driver

    exe = build_driver()
    proc = subprocess.run(
        [str(exe), "-mode", "tty", "-in", str(STREAM), *args], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--replays", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second of the tty display")
    parser.add_argument("--phase", choices=["throughput", "replay"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--sink",
        choices=["tty", "model", "none"],
        default="tty",
        help="with --phase replay: what the replay feeds (model/none: the share that is not the display's)",
    )
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        if args.phase == "throughput":
            run = _throughput(args.messages)
        else:
            run = _replay(args.replays, args.rate, args.sink)
        args.result.write_text(json.dumps(asyncio.run(run)))
        return 0

    print(
        f"stream: {STREAM.name}; throughput: {args.messages:,} messages; replay: {args.replays}x", flush=True
    )
    py_tp = _child(["--phase", "throughput", "--messages", str(args.messages)], on_pty=False)
    print(
        f"  python tty (headless): {py_tp['msgs_per_s']:,.0f} msgs/s, {py_tp['seconds']:.1f}s "
        f"(cpu {py_tp['cpu_seconds']:.1f}s), "
        f"{py_tp['frames']:.0f} frames, peak {py_tp['peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    go_tp = _go(["-total", str(args.messages)])
    print(
        f"  go progressui tty:     {go_tp['msgs_per_s']:,.0f} msgs/s, {go_tp['seconds']:.1f}s "
        f"(cpu {go_tp['cpu_seconds']:.1f}s), "
        f"peak {go_tp['peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    py_rp = _child(
        ["--phase", "replay", "--replays", str(args.replays), "--rate", str(args.rate)], on_pty=True
    )
    print(
        f"  python replay on a pty: {py_rp['messages']:.0f} msgs in {py_rp['seconds']:.1f}s, "
        f"cpu {py_rp['cpu_seconds']:.2f}s = {100 * py_rp['cpu_share']:.1f}% of a core, "
        f"{py_rp['frames']:.0f} frames ({py_rp['layouts']:.0f} with a new height)",
        flush=True,
    )
    n_replay = int(py_rp["messages"])
    go_rp = _go(["-replay", "-total", str(n_replay)])
    print(
        f"  go replay on a pty:     {go_rp['messages']:.0f} msgs in {go_rp['seconds']:.1f}s, "
        f"cpu {go_rp['cpu_seconds']:.2f}s = {100 * go_rp['cpu_seconds'] / go_rp['seconds']:.1f}% of a core",
        flush=True,
    )
    print(
        f"progress: tty {py_tp['msgs_per_s']:,.0f} msgs/s (go {go_tp['msgs_per_s']:,.0f} msgs/s), "
        f"cpu at replay {100 * py_rp['cpu_share']:.1f}% of a core, peak {py_tp['peak_rss_mib']:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

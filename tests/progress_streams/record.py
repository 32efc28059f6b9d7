"""Re-record the Status streams under tests/progress_streams/ from a real buildkitd.

    .venv/bin/python tests/progress_streams/record.py [NAME...]

Starts a private buildkitd and registry (``llblib_async.testing``), pushes the busybox
test image, runs each scenario and writes ``NAME.jsonl.gz``: one rawjson line per
Status message (buildctl's ``client.SolveStatus`` shape) plus ``"request"`` (the
request label) and ``"_t"`` (seconds since the scenario started, for real-rate
replay).  Go's decoder ignores both extra keys, so the Go drivers read the same files.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import llblib_async
from llblib_async import llb
from llblib_async.progress import StatusUpdate
from llblib_async.progress.rawjson import to_json
from llblib_async.testing import BuildkitDaemon, Registry, busybox_rootfs, ensure_buildkit_binaries
from llblib_async.testing.images import push_busybox_image

HERE = Path(__file__).resolve().parent
CONTEXT = HERE.parent.parent / "examples" / "demo-context"


class Recorder:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lines: list[str] = []

    def update(self, update: StatusUpdate) -> None:
        obj = to_json(update, labels=True)
        obj["_t"] = round(time.monotonic() - self.t0, 6)
        self.lines.append(json.dumps(obj, separators=(",", ":")))

    def close(self) -> None:
        pass


Scenario = Callable[[llblib_async.Client, llb.State, Recorder], Awaitable[None]]


async def local_build(client: llblib_async.Client, base: llb.State, rec: Recorder) -> None:
    # The demo's graph (examples/demo.py): file ops and an uploaded local directory.
    state = (
        llb.scratch()
        .mkdir("/etc")
        .mkfile("/etc/motd", f"built {time.time()}\n", mode=0o644)
        .copy(llb.local(CONTEXT, name="demo-context"), "/", "/app/")
    )
    with tempfile.TemporaryDirectory() as tmp:
        await client.solve(state, exports=[llblib_async.LocalExport(Path(tmp) / "out")], progress=rec)


async def shared(client: llblib_async.Client, base: llb.State, rec: Recorder) -> None:
    common = base.run("sh -c 'echo common step; sleep 0.3; echo common done'", ignore_cache=True).root
    a = common.run("sh -c 'for i in 1 2 3; do echo a $i; sleep 0.1; done'", ignore_cache=True).root
    b = common.run("sh -c 'for i in 1 2 3; do echo b $i >&2; sleep 0.1; done'", ignore_cache=True).root
    solver = llblib_async.Solver()
    async with solver.session(client, progress=rec) as session, asyncio.TaskGroup() as tg:
        tg.create_task(session.do(solver.build(a, label="a")))
        tg.create_task(session.do(solver.build(b, label="b")))


async def failure(client: llblib_async.Client, base: llb.State, rec: Recorder) -> None:
    bad = base.run(
        "sh -c 'echo compiling; echo error: missing semicolon >&2; exit 3'", ignore_cache=True, name="make"
    ).root
    try:
        await client.solve(bad, progress=rec)
    except llblib_async.SolveError:
        return
    raise AssertionError("the failing build succeeded")


async def biglog(client: llblib_async.Client, base: llb.State, rec: Recorder) -> None:
    # 100,000 lines, paced under BuildKit's 200 KiB/s log rate limit so none is clipped.
    cmd = "sh -c 'for k in 0 1 2 3 4 5 6 7 8 9; do seq $((k*10000+1)) $((k*10000+10000)); sleep 0.5; done'"
    await client.solve(base.run(cmd, ignore_cache=True).root, progress=rec)


async def clipped(client: llblib_async.Client, base: llb.State, rec: Recorder) -> None:
    # BuildKit clips a step's log at 2 MiB (BUILDKIT_STEP_LOG_MAX_SIZE) and says so in the log.
    cmd = (
        "sh -c 'i=0; while [ $i -lt 40000 ]; do "
        "echo line $i of a log that is longer than the limit; i=$((i+1)); done'"
    )
    await client.solve(base.run(cmd, ignore_cache=True).root, progress=rec)


async def busy(client: llblib_async.Client, base: llb.State, rec: Recorder) -> None:
    # Sixteen requests at once, each a few steps that print at a steady pace: the replayed load.
    solver = llblib_async.Solver()

    def steps(n: int) -> llb.State:
        s = base
        for k in range(3):
            s = s.run(
                f"sh -c 'for i in $(seq 1 40); do echo req{n} step{k} line $i; sleep 0.02; done'",
                ignore_cache=True,
                name=f"req{n} step {k}",
            ).root
        return s

    async with solver.session(client, progress=rec) as session, asyncio.TaskGroup() as tg:
        for n in range(16):
            tg.create_task(session.do(solver.build(steps(n), label=f"req{n}")))


async def grouped(client: llblib_async.Client, base: llb.State, rec: Recorder) -> None:
    # Three steps in one progress group (Go shows them as one entry) around an ungrouped one.
    group = llb.Constraints.of(progress_group=llb.ProgressGroup("pg-setup", "setting up"))
    s = base.run("sh -c 'echo before; sleep 0.2'", ignore_cache=True, name="before").root
    for k in range(3):
        s = s.run(
            f"sh -c 'for i in 1 2 3; do echo setup{k} line $i; sleep 0.1; done'",
            ignore_cache=True,
            name=f"setup step {k}",
            constraints=group,
        ).root
    s = s.run("sh -c 'echo after; sleep 0.2'", ignore_cache=True, name="after").root
    await client.solve(s, progress=rec)


SCENARIOS: dict[str, Scenario] = {
    "grouped": grouped,
    "local_build": local_build,
    "shared": shared,
    "failure": failure,
    "biglog": biglog,
    "clipped": clipped,
    "busy": busy,
}


async def record(address: str, image: str, names: list[str]) -> None:
    base = llb.image(image)
    async with llblib_async.connect(address) as client:
        for name in names:
            rec = Recorder()
            await SCENARIOS[name](client, base, rec)
            path = HERE / f"{name}.jsonl.gz"
            with gzip.GzipFile(path, "wb", mtime=0) as f:
                f.write(("\n".join(rec.lines) + "\n").encode())
            print(f"{path.name}: {len(rec.lines)} messages")


def main() -> int:
    names = sys.argv[1:] or list(SCENARIOS)
    binaries = ensure_buildkit_binaries()
    with (
        BuildkitDaemon.start(binaries=binaries) as daemon,
        Registry.start() as registry,
        tempfile.TemporaryDirectory() as tmp,
    ):
        rootfs = busybox_rootfs(Path(tmp) / "rootfs")
        image = push_busybox_image(
            buildctl=binaries.buildctl,
            address=daemon.address,
            rootfs=rootfs,
            registry_host=registry.host,
            workdir=Path(tmp) / "work",
        )
        asyncio.run(record(daemon.address, image.ref, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())

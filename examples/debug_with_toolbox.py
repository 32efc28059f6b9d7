"""Debug a failed step of a workspace with a toolbox root, its pristine sources beside it.

    BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock BASE_IMAGE=registry:5000/busybox \
        python examples/debug_with_toolbox.py

The Python counterpart of Go llblib's ``fail`` example. A workspace (``llb.persistent``)
carries ``/src`` (a local directory) and ``/scratch`` through three runs; the third one
fails. ``on_error=OnError(root=toolbox, mounts=[...])`` then opens a container on the failed
step's ``/src`` and ``/scratch`` as they were when it failed, but with a different root
filesystem (the toolbox: here the base image plus a small ``/bin/differ`` script) and two more
mounts: the pristine sources at ``/original`` and an empty ``/output``. The differ lists
what the failed runs changed. On a terminal that is an interactive shell; otherwise (CI,
a pipe) the differ runs scripted and the example prints what it found.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import llblib_async
from llblib_async import OnError, llb

DIFFER = b"""#!/bin/sh
# differ ORIGINAL CHANGED OUTPUT: name each file that differs, copy it to OUTPUT
cd "$2" || exit 1
find . -type f | sort | while read -r f; do
    if ! cmp -s "$1/$f" "$f"; then
        echo "changed: ${f#./}"
        mkdir -p "$3/$(dirname "$f")" && cp "$f" "$3/$f"
    fi
done
"""


async def main(sources: Path) -> None:
    base = llb.image(os.environ.get("BASE_IMAGE", "busybox:latest"))
    src = llb.local(str(sources))
    ws = llb.persistent(base, mounts=[llb.bind("/src", src), llb.bind("/scratch", llb.scratch())])
    # fresh=True: these steps run again each time the program runs (llblib's IgnoreCache)
    ws = ws.run("echo tuned >> /src/config.txt; touch /scratch/step-one", shell=True, fresh=True)
    ws = ws.run("sed -i s/world/there/ /src/hello.txt", shell=True, fresh=True)
    failing = ws.run("ls /scratch; echo 'the tests failed' >&2; exit 1", shell=True, name="the tests")
    toolbox = base.mkfile("/bin/differ", DIFFER, mode=0o755)
    differ = "differ /original /src /output && ls /output"
    on_error = OnError(
        commands=[] if sys.stdin.isatty() else [differ],  # a shell on a terminal; else scripted
        root=toolbox,
        mounts=[llb.bind("/original", src, readonly=True), llb.bind("/output", llb.scratch())],
    )
    solver = llblib_async.Solver()
    async with llblib_async.connect() as client, solver.session(client) as session:
        try:
            await session.do(solver.build(failing.mount("/src"), on_error=on_error))
        except llblib_async.SolveError as err:
            print(f"the build failed (exit code {err.exit_code}); what the debugging found:")
            for run in err.debug:
                print(run.stdout.decode(), end="")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        sources = Path(tmp)
        (sources / "hello.txt").write_text("hello world\n")
        (sources / "config.txt").write_text("debug = false\n")
        (sources / "untouched.txt").write_text("the same\n")
        asyncio.run(main(sources))

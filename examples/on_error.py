"""Debug a failing build step in a container on its filesystem as it was when it failed.

    BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock BASE_IMAGE=registry:5000/busybox \
        python examples/on_error.py

The graph writes a file and then fails. With ``on_error=OnError()`` an interactive
shell opens on the local terminal in the failed step's filesystem (type ``exit`` to
leave it); when stdin is not a terminal (CI, a pipe) the example runs scripted
commands instead and prints their captured output. ``--drop`` swallows the build error.
"""

from __future__ import annotations

import asyncio
import os
import sys

import llblib_async
from llblib_async import OnError, llb


async def main(drop: bool) -> None:
    base = llb.image(os.environ.get("BASE_IMAGE", "busybox:latest"))
    failing = base.run(
        ["/bin/sh", "-c", "echo 'half done' > /progress.txt; exit 3"], name="a step that fails"
    ).root
    graph = failing.run(["/bin/sh", "-c", "echo never runs"]).root  # the failure is deep in the graph
    if sys.stdin.isatty():
        on_error = OnError(drop_error=drop)  # an interactive /bin/sh on this terminal
    else:
        on_error = OnError(commands=["cat /progress.txt", "ls /"], drop_error=drop)
    solver = llblib_async.Solver()
    async with llblib_async.connect() as client, solver.session(client) as session:
        try:
            result = await session.do(solver.build(graph, on_error=on_error))
        except llblib_async.SolveError as err:
            print(f"build failed (exit code {err.exit_code}): {err.message}")
            debug = err.debug
        else:
            print(f"build error dropped: {result.error.message if result.error else None}")
            debug = result.debug
    for run in debug:
        print(f"$ {' '.join(run.args)}  -> exit {run.exit_code}")
        print(run.stdout.decode(), end="")


if __name__ == "__main__":
    asyncio.run(main(drop="--drop" in sys.argv[1:]))

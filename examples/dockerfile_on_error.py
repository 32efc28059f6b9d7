"""Open a debug shell in the failed ``RUN`` step of a Dockerfile build.

    BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock BASE_IMAGE=127.0.0.1:5000/busybox \\
        python examples/dockerfile_on_error.py

The Dockerfile's second ``RUN`` writes a file and then fails. With ``on_error=OnError()``
an interactive shell opens on the local terminal in that step's filesystem as it was when
it failed (type ``exit`` to leave it); when stdin is not a terminal (CI, a pipe) scripted
commands run there instead and their output is printed. The build error is raised
afterwards; its ``str()`` points at the Dockerfile's line, as ``docker build`` does.
"""

from __future__ import annotations

import asyncio
import os
import sys

import llblib_async
from llblib_async import OnError, llb

DOCKERFILE = """\
FROM {base}
RUN echo "step one" > /one.txt
RUN echo "half done" > /progress.txt && exit 3
RUN echo "never runs"
"""


async def main() -> None:
    base = os.environ.get("BASE_IMAGE", "busybox:latest")
    image = llb.dockerfile(DOCKERFILE.format(base=base))
    # On a terminal: an interactive /bin/sh there; otherwise scripted commands.
    interactive = sys.stdin.isatty()
    on_error = OnError() if interactive else OnError(commands=["cat /one.txt /progress.txt"])
    async with llblib_async.connect() as client, llblib_async.Solver().session(client) as session:
        try:
            await session.do(llblib_async.Request.of(image, evaluate=True, on_error=on_error))
        except llblib_async.SolveError as err:
            print(f"the build failed with exit code {err.exit_code}:")
            print(err)
            for run in err.debug:
                print(f"$ {' '.join(run.args)}  -> exit {run.exit_code}")
                print(run.stdout.decode(), end="")
        else:
            raise SystemExit("the Dockerfile was expected to fail")


if __name__ == "__main__":
    asyncio.run(main())

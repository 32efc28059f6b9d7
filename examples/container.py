"""Run an ad-hoc container on the BuildKit worker, with a mount from another State.

    BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock BASE_IMAGE=registry:5000/busybox \
        python examples/container.py

The container's root is the image in ``$BASE_IMAGE``; a file made by an LLB file op
is mounted read-only at ``/data``; a tmpfs is at ``/scratch``. The process's output
is captured and printed; a non-zero exit would raise ``ContainerExitError``.
"""

from __future__ import annotations

import asyncio
import os

import llblib_async
from llblib_async import llb


async def main() -> None:
    root = llb.image(os.environ.get("BASE_IMAGE", "busybox:latest"))
    data = llb.scratch().mkfile("/greeting.txt", b"hello from a State\n")
    solver = llblib_async.Solver()
    request = solver.container(
        root,
        ["/bin/sh", "-c", "cat /data/greeting.txt; echo $WHO on $(hostname); df -h /scratch | tail -1"],
        env={"WHO": "a container"},
        hostname="adhoc",
        mounts=[llb.bind("/data", data, readonly=True), llb.tmpfs("/scratch", size=16 << 20)],
    )
    async with llblib_async.connect() as client, solver.session(client) as session:
        result = await session.do(request)
    assert result.container is not None
    print(result.container.stdout.decode(), end="")
    print(f"exit code {result.container.exit_code}")


if __name__ == "__main__":
    asyncio.run(main())

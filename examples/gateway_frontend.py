"""Run a frontend image (``gateway.v0``) and use its result as a State.

A frontend is a program in an image that turns inputs and options into an LLB graph
(``docker/dockerfile`` is one). ``llb.frontend(image, inputs=..., opts=...)`` is a State
holding its result: copy from it, run on it, merge it, export it.

Environment: ``BUILDKIT_HOST`` (the daemon), ``BASE_IMAGE`` (an image with a shell),
``FRONTEND_IMAGE`` (a Dockerfile frontend image in a registry you can reach, e.g. a mirror
of ``docker/dockerfile``; the test suite pushes BuildKit's own, built from source). Without
``FRONTEND_IMAGE`` the example runs BuildKit's built-in Dockerfile frontend through the same
API (``"dockerfile.v0"``).

    BASE_IMAGE=127.0.0.1:5000/busybox FRONTEND_IMAGE=127.0.0.1:5000/dockerfile-frontend:v0.34.2 \\
        python examples/gateway_frontend.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import llblib_async
from llblib_async import llb


async def main() -> None:
    base = os.environ.get("BASE_IMAGE", "docker.io/library/busybox:latest")
    frontend_image = os.environ.get("FRONTEND_IMAGE") or "dockerfile.v0"
    dockerfile = f'FROM {base}\nARG WHO\nRUN echo "built by $WHO" > /who\n'

    # The frontend's inputs are States; its options are strings (build args, target...).
    result = llb.frontend(
        frontend_image,
        inputs={
            "dockerfile": llb.scratch().mkfile("/Dockerfile", dockerfile),
            "context": llb.scratch().mkdir("/src"),
        },
        opts={"build-arg:WHO": f"the frontend {frontend_image}"},
    )
    # Use the result like any State: take a file out of it and merge it with another.
    combined = llb.merge(
        [
            llb.scratch().copy(result, "/who", "/from-frontend/who", create_dest_path=True),
            llb.scratch().mkfile("/from-python", "made in Python\n"),
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        progress = llblib_async.RecordingProgress()
        async with llblib_async.connect() as client:
            await client.solve(combined, exports=[llblib_async.LocalExport(out)], progress=progress)
        print((out / "from-frontend" / "who").read_text().strip())
        print((out / "from-python").read_text().strip())
        steps = sorted({v.name for u in progress.updates for v in u.vertices if v.name})
        print(f"{len(steps)} steps, e.g. {steps[0]!r}")


if __name__ == "__main__":
    asyncio.run(main())

"""Build several images at once in one session and push them to a registry.

Three images share a base and a common step (BuildKit runs it once) and differ in
their last step; the three requests run concurrently in one session, their progress
merged into one display (``BUILDKIT_PROGRESS`` picks it: ``auto`` by default, ``plain``
when not on a terminal), and each is pushed as ``$REGISTRY/llblib-example/<name>:latest``.

Environment: ``BUILDKIT_HOST`` (the daemon), ``BASE_IMAGE`` (an image with ``/bin/sh``,
e.g. a busybox in a local registry), ``REGISTRY`` (``host:port`` of a registry to push
to; plain HTTP is allowed, as for a loopback registry).

    BASE_IMAGE=127.0.0.1:5000/busybox:latest REGISTRY=127.0.0.1:5000 python examples/parallel_build_push.py
"""

from __future__ import annotations

import asyncio
import os
import sys

import llblib_async
from llblib_async import llb

SERVICES = ("api", "worker", "cli")


async def main() -> int:
    base_image, registry = os.environ.get("BASE_IMAGE"), os.environ.get("REGISTRY")
    if not base_image or not registry:
        print("set BASE_IMAGE (an image with /bin/sh) and REGISTRY (host:port to push to)", file=sys.stderr)
        return 2
    common = (
        llb.image(base_image)
        .run("sh -c 'mkdir -p /srv && echo shared layer > /srv/common.txt'", name="common setup")
        .root
    )
    solver = llblib_async.Solver()
    requests = [
        solver.build(
            common.run(f"sh -c 'echo {name} > /srv/service.txt'", name=f"configure {name}").root,
            label=name,
            exports=[
                llblib_async.ImageExport(f"{registry}/llblib-example/{name}:latest", push=True, insecure=True)
            ],
        )
        for name in SERVICES
    ]
    async with (
        llblib_async.connect() as client,
        llblib_async.open_progress() as progress,
        solver.session(client, progress=progress) as session,
    ):
        results = await asyncio.gather(*(session.do(r) for r in requests))
    for name, result in zip(SERVICES, results, strict=True):
        digest = result.exporter_response["containerimage.digest"]
        print(f"pushed {registry}/llblib-example/{name}:latest@{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

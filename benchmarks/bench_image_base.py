"""What inheriting the base image's config costs: image exports of ``llb.image(ref)`` States.

``nox -s bench -- image_base`` (or ``python benchmarks/bench_image_base.py [--runs N]
[--requests N]``). A private buildkitd and a loopback registry are started; a small base
image (one file, an ``ENV``, a ``CMD``) is pushed to the registry. Each run opens one
session and pushes ``--requests`` images built on the base (``llb.image(base).mkfile(...)``
plus a ``CMD``), once with the base's config inherited (the default: the first request
resolves the base's config in its build, the later ones hit the session's cache) and once
with ``inherit_config=False``, alternating which goes first. Printed: the median wall time
of the first request of a session and of the later ones, both ways, and the extra time
inheriting costs (``first request overhead``, ``later request overhead``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import llblib_async
from llblib_async import llb
from llblib_async.exporters import ImageExport
from llblib_async.llb import config_ops as co
from llblib_async.request import Request
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.docker_registry import Registry


async def push_base(address: str, registry: str) -> str:
    ref = f"{registry}/bench/base:1"
    base = (
        llb.scratch().mkfile("/hello", "hello\n").apply(co.add_default_env("PATH", "/bin"), co.cmd("/bin/sh"))
    )
    async with llblib_async.connect(address) as client:
        await client.solve(base, exports=[ImageExport(ref, push=True, insecure=True)])
    return ref


async def one_session(address: str, registry: str, base: str, requests: int, inherit: bool) -> list[float]:
    """Wall time of each request of one session (the first one first)."""
    tag = uuid.uuid4().hex[:8]
    times = []
    async with llblib_async.connect(address) as client, llblib_async.Solver().session(client) as session:
        for i in range(requests):
            st = (
                llb.image(base, inherit_config=inherit)
                .mkfile("/n", f"{tag} {i}\n")
                .apply(co.cmd("cat", "/n"))
            )
            export = ImageExport(f"{registry}/bench/app:{tag}-{i}", push=True, insecure=True)
            started = time.perf_counter()
            await session.do(Request.of(st, exports=[export]))
            times.append(time.perf_counter() - started)
        inner = session.image_resolver._inner
        assert not inherit or getattr(inner, "calls", None) == 1, "the base was not resolved once"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    registry = Registry.start()
    try:
        with BuildkitDaemon.start() as daemon:
            base = asyncio.run(push_base(daemon.address, registry.host))
            asyncio.run(one_session(daemon.address, registry.host, base, 2, True))  # warm up
            first: dict[bool, list[float]] = {True: [], False: []}
            later: dict[bool, list[float]] = {True: [], False: []}
            for run in range(args.runs):
                for inherit in (True, False) if run % 2 == 0 else (False, True):  # no order bias
                    times = asyncio.run(
                        one_session(daemon.address, registry.host, base, args.requests, inherit)
                    )
                    first[inherit].append(times[0])
                    later[inherit].extend(times[1:])
    finally:
        registry.stop()
    med = {k: (statistics.median(first[k]), statistics.median(later[k])) for k in (True, False)}
    print(f"image exports of llb.image States, {args.runs} sessions x {args.requests} requests each way")
    print(f"inherit_config=True   first {med[True][0] * 1000:.1f} ms  later {med[True][1] * 1000:.1f} ms")
    print(f"inherit_config=False  first {med[False][0] * 1000:.1f} ms  later {med[False][1] * 1000:.1f} ms")
    print(f"first request overhead: {(med[True][0] - med[False][0]) * 1000:.1f} ms")
    print(f"later request overhead: {(med[True][1] - med[False][1]) * 1000:.1f} ms")


if __name__ == "__main__":
    main()

"""Concurrent downloads on one session overlap, and each lands where its request said.

The daemon addresses a download only by session id and exporter index, so a request
downloading while another one downloads gets a short-lived private session
(``_pipeline/exports.py``). Overlap is shown by event order: every download's sink
waits until all of them have opened, which can only happen if they run at once.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

import llblib_async
from llblib_async import Solver, llb
from llblib_async.attachables.filesend import ByteSink, StreamTarget
from llblib_async.testing import BuildkitDaemon, DockerDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")

COUNT = 16


def _state(i: int, stamp: int) -> llb.State:
    return llb.scratch().with_platform(llb.default_platform()).file(llb.mkfile("/id", f"{i} {stamp}"))


async def test_sixteen_local_and_tar_downloads_run_at_once_and_are_all_correct(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    stamp = time.time_ns()
    solver = Solver()
    requests = []
    for i in range(COUNT):
        export: llblib_async.LocalExport | llblib_async.TarExport
        if i % 2:
            export = llblib_async.TarExport(tmp_path / f"t{i}.tar")
        else:
            export = llblib_async.LocalExport(tmp_path / f"d{i}")
        requests.append(solver.build(_state(i, stamp), exports=[export]))
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        await asyncio.wait_for(asyncio.gather(*(session.do(r) for r in requests)), 120)
        private = session.export_sessions
        # one after the other: the session's own route is free each time, no new session
        await asyncio.wait_for(session.do(requests[0]), 60)
        await asyncio.wait_for(session.do(requests[1]), 60)
        assert session.export_sessions == private
    assert 1 <= private <= COUNT - 1
    for i in range(COUNT):
        if i % 2:
            with tarfile.open(tmp_path / f"t{i}.tar") as tar:
                f = tar.extractfile("id")
                assert f is not None
                assert f.read().decode() == f"{i} {stamp}"
        else:
            assert (tmp_path / f"d{i}" / "id").read_text() == f"{i} {stamp}"


class _Barrier:
    """Records sink events; every sink's first write waits until all sinks have opened."""

    def __init__(self, want: int) -> None:
        self.want = want
        self.events: list[tuple[str, int]] = []
        self.opened = 0
        self.all_open = asyncio.Event()
        self.data: dict[int, bytearray] = {}

    def target(self, i: int) -> StreamTarget:
        barrier = self

        class Sink:
            async def send(self, item: bytes) -> None:
                await barrier.all_open.wait()
                barrier.data[i] += item

            async def aclose(self) -> None:
                barrier.events.append(("close", i))

        async def open_sink(metadata: Mapping[str, str]) -> ByteSink:
            barrier.events.append(("open", i))
            barrier.data[i] = bytearray()
            barrier.opened += 1
            if barrier.opened == barrier.want:
                barrier.all_open.set()
            return Sink()

        return StreamTarget(open_sink)


async def test_downloads_overlap_in_time(buildkit_daemon: BuildkitDaemon, tmp_path: Path) -> None:
    """Each request exports a tarball to a sink (held until every sink opened) and a
    directory; with serialised export phases the first sink would wait forever."""
    stamp = time.time_ns()
    barrier = _Barrier(COUNT)
    solver = Solver()
    requests = [
        solver.build(
            _state(i, stamp),
            exports=[
                llblib_async.OCIExport(barrier.target(i), name=f"x/overlap:{i}"),
                llblib_async.LocalExport(tmp_path / f"d{i}"),
            ],
        )
        for i in range(COUNT)
    ]
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        try:
            async with asyncio.timeout(120):  # a hang guard, not a speed limit
                results = await asyncio.gather(*(session.do(r) for r in requests))
        except TimeoutError:
            pytest.fail(f"downloads did not overlap: {barrier.opened} of {COUNT} sinks opened")
    kinds = [kind for kind, _ in barrier.events]
    assert kinds == ["open"] * COUNT + ["close"] * COUNT
    for i, result in enumerate(results):
        assert (tmp_path / f"d{i}" / "id").read_text() == f"{i} {stamp}"
        with tarfile.open(fileobj=io.BytesIO(bytes(barrier.data[i]))) as tar:
            f = tar.extractfile("index.json")
            assert f is not None
            [manifest] = json.load(f)["manifests"]
        assert manifest["digest"] == result.exporter_response["containerimage.digest"]


async def _download_while_another_request_holds_the_route(address: str, tmp_path: Path) -> int:
    """Request A (a LocalExport) holds the session's route, parked in its result handler;
    B (a TarExport) runs meanwhile and must come through a private session."""
    stamp = time.time_ns()
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold(result: llblib_async.Result) -> None:
        holding.set()
        await release.wait()

    solver = Solver()
    a = solver.build(_state(0, stamp), exports=[llblib_async.LocalExport(tmp_path / "a")], on_result=hold)
    b = solver.build(_state(1, stamp), exports=[llblib_async.TarExport(tmp_path / "b.tar")])
    async with llblib_async.connect(address) as client, solver.session(client) as session:
        task_a = asyncio.create_task(session.do(a))
        try:
            await asyncio.wait_for(holding.wait(), 60)
            result_b = await asyncio.wait_for(session.do(b), 60)
            assert not task_a.done()
        finally:
            release.set()
        await asyncio.wait_for(task_a, 60)
        private = session.export_sessions
    assert result_b.outputs == (tmp_path / "b.tar",)
    assert (tmp_path / "a" / "id").read_text() == f"0 {stamp}"
    with tarfile.open(tmp_path / "b.tar") as tar:
        f = tar.extractfile("id")
        assert f is not None
        assert f.read().decode() == f"1 {stamp}"
    return private


async def test_a_download_runs_while_another_request_holds_the_session_route(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    assert await _download_while_another_request_holds_the_route(buildkit_daemon.address, tmp_path) == 1


@pytest.mark.docker
async def test_private_export_sessions_on_a_docker_daemon(
    buildkit_dockerd: DockerDaemon, tmp_path: Path
) -> None:
    """On ``docker://`` the private session is another ``/session`` hijack."""
    address = "docker+" + buildkit_dockerd.host
    assert await _download_while_another_request_holds_the_route(address, tmp_path) == 1


async def test_concurrent_dockerfile_builds_download_their_own_context(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    """Frontend builds read their context through the session the request names -- a
    private one for all but one of them -- and each download holds its own files."""
    stamp = time.time_ns()
    solver = Solver()
    requests = []
    for i in range(4):
        ctx = tmp_path / f"ctx{i}"
        ctx.mkdir()
        (ctx / "data.txt").write_text(f"{i} {stamp}")
        state = llb.dockerfile("FROM scratch\nCOPY data.txt /out/\n", context=ctx)
        requests.append(solver.build(state, exports=[llblib_async.LocalExport(tmp_path / f"out{i}")]))
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        await asyncio.wait_for(asyncio.gather(*(session.do(r) for r in requests)), 120)
        assert session.export_sessions >= 1
    for i in range(4):
        assert (tmp_path / f"out{i}" / "out" / "data.txt").read_text() == f"{i} {stamp}"

"""Solver + Session: many gateway-build requests in parallel over one BuildKit session."""

from __future__ import annotations

import asyncio
import json
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpclib.const
import grpclib.server
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import llblib_async
from llblib_async import Request, Result, SessionClosedError, Solver, llb
from llblib_async._pb.moby.buildkit.secrets import v1 as secrets_pb
from llblib_async.llb import config_ops as co
from llblib_async.testing import BuildkitDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _ctx(root: Path, name: str, content: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "data.txt").write_text(content)
    return d


def _rootfs(busybox_rootfs: Path) -> llb.State:
    return llb.scratch().copy(llb.local(busybox_rootfs), "/", "/")


def _tasks() -> set[asyncio.Task[object]]:
    return set(asyncio.all_tasks())


def _processes_with(marker: str) -> list[int]:
    """Pids of host processes whose command line contains ``marker`` (build containers included)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


async def _until(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` until it holds: the host's process table has no event to wait on."""
    try:
        async with asyncio.timeout(60):  # a guard against a hang, not a speed limit
            while True:
                if condition():
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"still not the case after 60 s: {what}")


class _SleepStarted:
    """A progress sink noting which requests' ``sleep`` step has started in the daemon."""

    def __init__(self, want: int) -> None:
        self.started: set[str] = set()
        self.want = want
        self.all_started = asyncio.Event()

    def update(self, update: llblib_async.StatusUpdate) -> None:
        if any(v.started is not None and "sleep" in v.name for v in update.vertices):
            self.started.add(update.request)
            if len(self.started) >= self.want:
                self.all_started.set()

    def close(self) -> None:
        pass


async def test_sixteen_parallel_requests_with_their_own_locals_and_exports(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    before = _tasks()
    solver = Solver()
    sink = llblib_async.RecordingProgress()
    stamp = time.time_ns()
    requests: list[tuple[Request, Path, str]] = []
    for i in range(16):
        content = f"request {i} {stamp}\n"
        ctx = _ctx(tmp_path, f"ctx{i}", content)
        state = llb.scratch().copy(llb.local(ctx), "/", "/in/").file(llb.mkfile("/id", str(i).encode()))
        out = tmp_path / f"out{i}"
        export: llblib_async.LocalExport | llblib_async.TarExport
        export = (
            llblib_async.LocalExport(out) if i % 2 == 0 else llblib_async.TarExport(tmp_path / f"out{i}.tar")
        )
        requests.append((solver.build(state, label=f"req{i}", exports=[export]), out, content))
    async with (
        llblib_async.connect(buildkit_daemon.address) as client,
        solver.session(client, progress=sink) as session,
    ):
        results = await asyncio.wait_for(asyncio.gather(*(session.do(r) for r, _, _ in requests)), 120)
        assert len(session.locals) == 16
    assert len({r.ref for r in results}) == 16
    for i, (_, out, content) in enumerate(requests):
        if i % 2 == 0:
            assert (out / "in" / "data.txt").read_text() == content
            assert (out / "id").read_text() == str(i)
        else:
            with tarfile.open(tmp_path / f"out{i}.tar") as tar:
                f = tar.extractfile("in/data.txt")
                assert f is not None
                assert f.read().decode() == content
    assert {u.request for u in sink.updates} == {f"req{i}" for i in range(16)}
    assert _tasks() <= before


async def test_result_handler_reads_the_result_before_export(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = _ctx(tmp_path, "ctx", f"hello {time.time_ns()}\n")
    seen: dict[str, object] = {}

    async def handler(result: Result) -> None:
        seen["data"] = await result.read_file("/in/data.txt")
        seen["part"] = await result.read_file("/in/data.txt", offset=1, length=4)
        seen["dir"] = sorted(s.path for s in await result.read_dir("/in"))
        st = await result.stat("/in")
        seen["is_dir"] = st.is_dir
        seen["exported_yet"] = (tmp_path / "out").exists()

    solver = Solver()
    req = solver.build(
        llb.scratch().copy(llb.local(ctx), "/", "/in/"),
        exports=[llblib_async.LocalExport(tmp_path / "out")],
        on_result=handler,
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        await asyncio.wait_for(session.do(req), 60)
    content = (ctx / "data.txt").read_bytes()
    assert seen == {
        "data": content,
        "part": content[1:5],
        "dir": ["data.txt"],
        "is_dir": True,
        "exported_yet": False,
    }
    assert (tmp_path / "out" / "in" / "data.txt").read_bytes() == content


async def test_request_made_after_open_with_a_new_local(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    first = _ctx(tmp_path, "first", f"one {time.time_ns()}")
    solver = Solver()
    solver.add_local("first", first)
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        r1 = solver.build(
            llb.scratch().copy(llb.local(first, name="first"), "/", "/"),
            exports=[llblib_async.LocalExport(tmp_path / "o1")],
        )
        await asyncio.wait_for(session.do(r1), 60)
        second = _ctx(tmp_path, "second", f"two {time.time_ns()}")
        r2 = solver.build(
            llb.scratch().copy(llb.local(second), "/", "/"),
            exports=[llblib_async.LocalExport(tmp_path / "o2")],
        )
        await asyncio.wait_for(session.do(r2), 60)
        third = _ctx(tmp_path, "third", f"three {time.time_ns()}")
        solver.add_local("third", third)  # registered in the solver while open
        assert session.locals["third"] == third
        r3 = solver.build(
            await llb.marshal_async(llb.scratch().copy(llb.local(third, name="third"), "/", "/")),
            exports=[llblib_async.LocalExport(tmp_path / "o3")],
        )
        await asyncio.wait_for(session.do(r3), 60)
    assert (tmp_path / "o1" / "data.txt").read_text().startswith("one ")
    assert (tmp_path / "o2" / "data.txt").read_text().startswith("two ")
    assert (tmp_path / "o3" / "data.txt").read_text().startswith("three ")


async def test_a_failing_request_does_not_break_the_others(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    solver = Solver()
    bad = solver.build(
        _rootfs(buildkit_busybox_rootfs).run(f"echo failing-{time.time_ns()}; exit 3", shell=True),
        label="bad",
    )
    missing = solver.build(llb.scratch().copy(llb.scratch(), "/no/such/file", "/x"), label="missing")

    async def boom(result: Result) -> None:
        raise RuntimeError("handler says no")

    handler_fails = solver.build(llb.scratch().file(llb.mkfile("/f", b"x")), on_result=boom)
    good = solver.build(
        llb.scratch().file(llb.mkfile("/ok", str(time.time_ns()).encode())),
        exports=[llblib_async.LocalExport(tmp_path / "good")],
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        outcome = await asyncio.wait_for(
            asyncio.gather(
                session.do(bad),
                session.do(missing),
                session.do(handler_fails),
                session.do(good),
                return_exceptions=True,
            ),
            120,
        )
        assert isinstance(outcome[0], llblib_async.SolveError)
        assert outcome[0].exit_code == 3
        assert "failing-" in (outcome[0].logs or "")
        assert isinstance(outcome[1], llblib_async.SolveError)
        assert isinstance(outcome[2], RuntimeError)
        assert str(outcome[2]) == "handler says no"
        assert isinstance(outcome[3], llblib_async.SolveResult)
        # the session still works afterwards
        again = solver.build(llb.scratch().file(llb.mkfile("/again", b"y")),
                             exports=[llblib_async.LocalExport(tmp_path / "again")])  # fmt: skip
        await asyncio.wait_for(session.do(again), 60)
    assert (tmp_path / "good" / "ok").exists()
    assert (tmp_path / "again" / "again").read_bytes() == b"y"


async def test_cancelling_one_request_cancels_its_build_only(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    before = _tasks()
    solver = Solver()
    watch = _SleepStarted(1)
    marker = f"cancel-me-{time.time_ns()}"
    slow = solver.build(
        _rootfs(buildkit_busybox_rootfs).run(f"sleep 3600; echo {marker}", shell=True), label="slow"
    )
    quick = solver.build(
        llb.scratch().file(llb.mkfile("/q", str(time.time_ns()).encode())),
        exports=[llblib_async.LocalExport(tmp_path / "q")],
    )
    async with (
        llblib_async.connect(buildkit_daemon.address) as client,
        solver.session(client, progress=watch) as session,
    ):
        slow_task = asyncio.create_task(session.do(slow))
        await asyncio.wait_for(watch.all_started.wait(), 60)
        # The vertex starts a little before its process does.
        await _until(lambda: _processes_with(marker), "the exec should be running in the daemon")
        quick_task = asyncio.create_task(session.do(quick))
        slow_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(60):  # the exec sleeps for an hour: cancelling must not wait for it
                await slow_task
        await asyncio.wait_for(quick_task, 60)
        # The daemon cancelled the build: its container process goes away.
        await _until(lambda: not _processes_with(marker), "the cancelled exec should be gone")
        assert not session._running
    assert (tmp_path / "q" / "q").exists()
    assert _tasks() <= before


async def test_leaving_the_block_cancels_pending_requests(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    before = _tasks()
    solver = Solver()
    slow = solver.build(
        _rootfs(buildkit_busybox_rootfs).run(f"sleep 3600; echo {time.time_ns()}", shell=True), label="s"
    )
    watch = _SleepStarted(1)
    async with llblib_async.connect(buildkit_daemon.address) as client:
        # The exec sleeps for an hour: leaving the block must not wait for it (120 s: a hang guard).
        async with asyncio.timeout(120), solver.session(client, progress=watch) as session:
            task = asyncio.create_task(session.do(slow))
            await asyncio.wait_for(watch.all_started.wait(), 60)
        with pytest.raises(SessionClosedError):
            await asyncio.wait_for(task, 10)
        with pytest.raises(SessionClosedError):
            await session.do(slow)
    assert _tasks() <= before


async def test_daemon_killed_fails_every_pending_request(
    buildkit_fresh_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    before = _tasks()
    solver = Solver()
    requests = [
        solver.build(
            _rootfs(buildkit_busybox_rootfs).run(f"sleep 30; echo {i} {time.time_ns()}", shell=True),
            label=f"r{i}",
        )
        for i in range(3)
    ]
    watch = _SleepStarted(3)
    close_error: BaseException | None = None
    async with llblib_async.connect(buildkit_fresh_daemon.address) as client:
        try:
            async with solver.session(client, progress=watch) as session:
                tasks = [asyncio.create_task(session.do(r)) for r in requests]
                await asyncio.wait_for(watch.all_started.wait(), 60)
                buildkit_fresh_daemon.kill()
                outcome = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        except llblib_async.BuildKitError as e:
            close_error = e
    for o in outcome:
        assert isinstance(o, llblib_async.ConnectionLostError), repr(o)
    assert close_error is None or isinstance(close_error, llblib_async.ConnectionLostError)
    assert _tasks() <= before


async def test_request_value() -> None:
    st = llb.scratch()
    with pytest.raises(TypeError):
        Request()
    r = Request.of(st, label="x", entitlements=["network.host"], frontend_attrs={"a": "b"})
    assert r.state is st
    assert r.definition is None
    assert r.entitlements == ("network.host",)
    with pytest.raises(TypeError):
        r.frontend_attrs["c"] = "d"  # type: ignore[index]
    with pytest.raises(AttributeError):
        r.label = "y"  # type: ignore[misc]


async def test_solver_registers_locals_and_checks_them(tmp_path: Path) -> None:
    solver = Solver()
    with pytest.raises(llblib_async.LocalDirError):
        solver.add_local("x", tmp_path / "missing")
    a = _ctx(tmp_path, "a", "1")
    b = _ctx(tmp_path, "b", "2")
    solver.add_local("x", a)
    solver.add_local("x", a)
    with pytest.raises(llblib_async.LocalDirError):
        solver.add_local("x", b)
    assert dict(solver.locals) == {"x": a}
    with pytest.raises(TypeError):
        solver.add_attachable(object())  # type: ignore[arg-type]


class _OneSecret:
    """A minimal secrets attachable (the real ones live in llblib_async.attachables)."""

    def __init__(self, secret_id: str, data: bytes) -> None:
        self.secret_id = secret_id
        self.data = data
        self.calls = 0

    async def _get_secret(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, secrets_pb.GetSecretRequest)
        self.calls += 1
        if request.id != self.secret_id:
            raise GRPCError(Status.NOT_FOUND, f"secret {request.id} not found")
        await stream.send_message(secrets_pb.GetSecretResponse(data=self.data))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            "/moby.buildkit.secrets.v1.Secrets/GetSecret": grpclib.const.Handler(
                self._get_secret,
                grpclib.const.Cardinality.UNARY_UNARY,
                secrets_pb.GetSecretRequest,
                secrets_pb.GetSecretResponse,
            )
        }


async def test_solver_attachables_are_served_in_the_session(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    token = f"tok-{time.time_ns()}".encode()
    secrets = _OneSecret("tok", token)
    solver = Solver()
    solver.add_attachable(secrets)
    state = _rootfs(buildkit_busybox_rootfs).run(
        "cat /run/secrets/tok > /seen", shell=True, mounts=[llb.secret_mount("/run/secrets/tok", id="tok")]
    )
    seen: list[bytes] = []

    async def read(result: Result) -> None:
        seen.append(await result.read_file("/seen"))

    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        await asyncio.wait_for(session.do(solver.build(state, on_result=read)), 60)
    assert seen == [token]
    assert secrets.calls >= 1


async def test_bad_locals_fail_the_request_before_anything_is_sent(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    solver = Solver()
    a = _ctx(tmp_path, "a", "a")
    b = _ctx(tmp_path, "b", "b")
    missing = solver.build(llb.scratch().copy(llb.local(tmp_path / "missing"), "/", "/"))
    clash = solver.build(llb.scratch().copy(llb.local(b, name="ctx"), "/", "/"))
    ok = solver.build(
        llb.scratch().copy(llb.local(a, name="ctx"), "/", "/"),
        exports=[llblib_async.LocalExport(tmp_path / "o")],
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(llblib_async.LocalDirError):
            await asyncio.wait_for(session.do(missing), 10)
        await asyncio.wait_for(session.do(ok), 60)
        with pytest.raises(llblib_async.LocalDirError, match="already served"):
            await asyncio.wait_for(session.do(clash), 10)
    assert (tmp_path / "o" / "data.txt").read_text() == "a"


async def test_oci_layout_exports_of_concurrent_requests_go_to_their_own_dirs(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    """``OCILayoutExport`` on ``Session.do``: the daemon writes through a session's one
    ``export`` content store, so concurrent requests get private export sessions; each
    layout directory ends up with its own image (config label checked through the blobs)."""
    solver = Solver()
    requests = []
    for i in range(3):
        state = (
            llb.scratch()
            .with_platform(llb.default_platform())
            .mkfile(f"/n{i}", str(i))
            .apply(co.add_label("n", str(i)))
        )
        export = llblib_async.OCILayoutExport(tmp_path / f"l{i}", name=f"x/n:{i}")
        requests.append(solver.build(state, exports=[export]))
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        results = await asyncio.wait_for(asyncio.gather(*(session.do(r) for r in requests)), 120)
    for i, result in enumerate(results):
        layout = tmp_path / f"l{i}"
        [entry] = json.loads((layout / "index.json").read_text())["manifests"]
        assert entry["digest"] == result.exporter_response["containerimage.digest"]

        def blob(digest: str, layout: Path = layout) -> Any:
            return json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes())

        config = blob(blob(entry["digest"])["config"]["digest"])
        assert config["config"]["Labels"] == {"n": str(i)}


async def test_the_state_image_config_is_in_the_exporter_response(buildkit_daemon: BuildkitDaemon) -> None:
    solver = Solver()
    state = llb.scratch().mkfile("/f", "x").apply(co.add_default_env("GREETING", "hi"), co.cmd("/f"))
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with_config = await asyncio.wait_for(session.do(solver.build(state)), 60)
        without = await asyncio.wait_for(session.do(solver.build(llb.scratch().mkfile("/f", "x"))), 60)
    config = json.loads(with_config.exporter_response[llblib_async.RESPONSE_IMAGE_CONFIG_KEY])
    assert config["config"]["Env"][-1] == "GREETING=hi"
    assert config["config"]["Cmd"] == ["/f"]
    assert llblib_async.RESPONSE_IMAGE_CONFIG_KEY not in without.exporter_response

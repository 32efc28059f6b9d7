"""Sessions on the Docker daemon (20.10) through its ``/session`` hijack.

* A :class:`Solver` session on dockerd runs over ``POST /session`` (``docker-hijack``): it
  uploads a local directory and downloads a ``LocalExport``, serves two requests at once,
  and closes cleanly (its socket closed, no task left behind).
* ``MobyExport`` through ``Session.do`` gets the State's image config (Docker 20.10 reads
  it from the gateway result's metadata, not from the exporter attr).
* On plain buildkitd the session is ``Control.Session`` (``control-session``); a dockerd
  refusing ``/session`` falls back to it, an unreachable one is a typed error.
* An exporter Docker lacks raises :class:`UnsupportedExporterError` through ``Session.do``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import llblib_async
from llblib_async import Solver, llb
from llblib_async._identity import new_id
from llblib_async._tunnel.transports import (
    TRANSPORT_CONTROL_SESSION,
    TRANSPORT_DOCKER_HIJACK,
    open_client_session,
    open_docker_session,
)
from llblib_async._wire.connection import Connection
from llblib_async.attachables.filesync import FileSyncProvider
from llblib_async.errors import DaemonUnreachableError, UnsupportedExporterError, UpgradeRefusedError
from llblib_async.exporters import ImageExport, MobyExport
from llblib_async.llb import config_ops as co
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.dockerd import DockerDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOLVE_TIMEOUT = 180.0


def _docker_address(daemon: DockerDaemon) -> str:
    return "docker+" + daemon.host


def _tasks() -> set[asyncio.Task[object]]:
    return set(asyncio.all_tasks())


def _socket_fds() -> set[str]:
    """This process's open sockets (``socket:[inode]``)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def _tree(root: Path, marker: str) -> Path:
    """A small context: text, a 1 MiB binary file, a subdirectory, a symlink."""
    ctx = root / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "hello.txt").write_text(f"hello {marker}\n")
    (ctx / "sub" / "blob.bin").write_bytes(os.urandom(1 << 20))
    (ctx / "link").symlink_to("hello.txt")
    return ctx


# --------------------------------------------------------------------------- dockerd


@pytest.mark.docker
async def test_docker_session_uses_the_hijack_uploads_and_downloads(
    buildkit_dockerd: DockerDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    ctx = _tree(tmp_path, marker)
    out = tmp_path / "out"
    solver = Solver()
    state = (
        llb.scratch()
        .copy(llb.local(buildkit_busybox_rootfs), "/", "/rootfs/")
        .copy(llb.local(ctx), "/", "/ctx/")
        .file(llb.mkfile("/marker", marker.encode()))
    )
    req = solver.build(state, label="upload", exports=[llblib_async.LocalExport(out)])
    before = _tasks()
    async with llblib_async.connect(_docker_address(buildkit_dockerd)) as client:
        assert client.connection.docker_socket == str(buildkit_dockerd.socket_path)
        sockets_before = _socket_fds()
        async with solver.session(client) as session:
            assert session.transport == TRANSPORT_DOCKER_HIJACK
            # the session has a socket of its own (the /grpc connection is not it)
            session_sockets = _socket_fds() - sockets_before
            assert len(session_sockets) == 1
            await asyncio.wait_for(session.do(req), SOLVE_TIMEOUT)
            handle = session._handle
        assert handle.closed.is_set()
        assert handle.exception is None
        assert not session_sockets & _socket_fds(), "the /session socket is still open"
    assert _tasks() <= before
    assert (out / "marker").read_bytes() == marker.encode()
    assert (out / "ctx" / "hello.txt").read_text() == f"hello {marker}\n"
    assert (out / "ctx" / "sub" / "blob.bin").read_bytes() == (ctx / "sub" / "blob.bin").read_bytes()
    assert os.readlink(out / "ctx" / "link") == "hello.txt"
    busybox = (buildkit_busybox_rootfs / "bin" / "busybox").read_bytes()
    assert (out / "rootfs" / "bin" / "busybox").read_bytes() == busybox
    assert os.readlink(out / "rootfs" / "bin" / "sh") == os.readlink(buildkit_busybox_rootfs / "bin" / "sh")


@pytest.mark.docker
async def test_two_concurrent_requests_on_one_docker_session(
    buildkit_dockerd: DockerDaemon, tmp_path: Path
) -> None:
    solver = Solver()
    reqs = []
    for i in range(2):
        ctx = tmp_path / f"ctx{i}"
        ctx.mkdir()
        content = os.urandom(256 * 1024)
        (ctx / "data.bin").write_bytes(content)
        state = llb.scratch().copy(llb.local(ctx), "/", "/in/").file(llb.mkfile("/id", str(i).encode()))
        out = tmp_path / f"out{i}"
        reqs.append(
            (solver.build(state, label=f"r{i}", exports=[llblib_async.LocalExport(out)]), out, content)
        )
    sink = llblib_async.RecordingProgress()
    before = _tasks()
    async with (
        llblib_async.connect(_docker_address(buildkit_dockerd)) as client,
        solver.session(client, progress=sink) as session,
    ):
        assert session.transport == TRANSPORT_DOCKER_HIJACK
        results = await asyncio.wait_for(asyncio.gather(*(session.do(r) for r, _, _ in reqs)), SOLVE_TIMEOUT)
    assert _tasks() <= before
    assert results[0].ref != results[1].ref
    for i, (_, out, content) in enumerate(reqs):
        assert (out / "in" / "data.bin").read_bytes() == content
        assert (out / "id").read_text() == str(i)
    assert {u.request for u in sink.updates} >= {"r0", "r1"}


@pytest.mark.docker
async def test_moby_export_through_a_session_gets_the_image_config(buildkit_dockerd: DockerDaemon) -> None:
    marker = uuid.uuid4().hex
    name = f"llblib-session-moby:{marker[:12]}"
    state = (
        llb.scratch()
        .with_platform(llb.default_platform())
        .mkfile("/hello", f"hello {marker}\n")
        .apply(
            co.add_default_env("GREETING", "hello"),
            co.add_label("org.example.marker", marker),
            co.default_dir("/srv"),
            co.cmd("/hello"),
        )
    )
    solver = Solver()
    async with (
        llblib_async.connect(_docker_address(buildkit_dockerd)) as client,
        solver.session(client) as session,
    ):
        assert session.transport == TRANSPORT_DOCKER_HIJACK
        result = await asyncio.wait_for(
            session.do(solver.build(state, exports=[MobyExport(name)])), SOLVE_TIMEOUT
        )
    inspected = await buildkit_dockerd.inspect_image(name)
    assert inspected["RepoTags"] == [name]
    assert inspected["Id"] == result.exporter_response["containerimage.digest"]
    config = inspected["Config"]
    assert "GREETING=hello" in config["Env"]
    assert config["Labels"] == {"org.example.marker": marker}
    assert config["Cmd"] == ["/hello"]
    assert config["WorkingDir"] == "/srv"
    assert len(inspected["RootFS"]["Layers"]) == 1


@pytest.mark.docker
async def test_image_exporter_through_a_docker_session_is_a_typed_error(
    buildkit_dockerd: DockerDaemon, tmp_path: Path
) -> None:
    solver = Solver()
    state = llb.scratch().file(llb.mkfile("/x", b"x"))
    bad = solver.build(state, exports=[ImageExport("127.0.0.1:1/never:v1", push=True, insecure=True)])
    good = solver.build(state, exports=[llblib_async.LocalExport(tmp_path / "out")])
    async with (
        llblib_async.connect(_docker_address(buildkit_dockerd)) as client,
        solver.session(client) as session,
    ):
        with pytest.raises(UnsupportedExporterError) as err:
            await asyncio.wait_for(session.do(bad), SOLVE_TIMEOUT)
        assert err.value.exporter == "image"
        # the session survives the failed request
        await asyncio.wait_for(session.do(good), SOLVE_TIMEOUT)
    assert (tmp_path / "out" / "x").read_bytes() == b"x"


@pytest.mark.docker
async def test_open_docker_session_directly(buildkit_dockerd: DockerDaemon, tmp_path: Path) -> None:
    """The low-level opener: the handle's methods are announced; leaving closes everything."""
    before = _tasks()
    sockets_before = _socket_fds()
    async with open_docker_session(
        str(buildkit_dockerd.socket_path),
        session_id=new_id(),
        attachables=[FileSyncProvider({"ctx": tmp_path})],
        close_timeout=10.0,
    ) as handle:
        assert handle.transport == TRANSPORT_DOCKER_HIJACK
        assert handle.label == _docker_address(buildkit_dockerd)
        assert "/moby.filesync.v1.FileSync/DiffCopy" in handle.methods
        assert len(_socket_fds() - sockets_before) == 1
    assert handle.closed.is_set()
    assert handle.exception is None
    assert _socket_fds() <= sockets_before
    assert _tasks() <= before


# --------------------------------------------------------------------------- buildkitd / fakes


async def test_buildkitd_session_uses_control_session(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    solver = Solver()
    req = solver.build(
        llb.scratch().file(llb.mkfile("/x", b"x")), exports=[llblib_async.LocalExport(tmp_path)]
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        assert client.connection.docker_socket is None
        assert session.transport == TRANSPORT_CONTROL_SESSION
        await asyncio.wait_for(session.do(req), SOLVE_TIMEOUT)
    assert (tmp_path / "x").read_bytes() == b"x"


@asynccontextmanager
async def _fake_docker_api(path: Path, heads: list[str]) -> AsyncIterator[None]:
    """A unix socket answering every request with Docker's 404 (a daemon without ``/session``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append((await reader.readuntil(b"\r\n\r\n")).decode("latin-1"))
            body = b'{"message":"page not found"}'
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def test_refused_session_falls_back_to_control_session(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = tmp_path / "docker.sock"
    heads: list[str] = []
    session_id = new_id()
    attachables = [FileSyncProvider({"ctx": tmp_path})]
    async with (
        _fake_docker_api(fake, heads),
        llblib_async.connect(buildkit_daemon.address) as real,
    ):
        # buildkitd's channel, but a "Docker socket" that refuses /session
        conn = Connection(
            channel=real.connection.channel, address=real.address, is_moby=False, docker_socket=str(fake)
        )
        with caplog.at_level("WARNING", logger="llblib_async.session"):
            async with open_client_session(conn, session_id=session_id, attachables=attachables) as handle:
                assert handle.transport == TRANSPORT_CONTROL_SESSION
                await asyncio.wait_for(handle.wait_health_check(), 30)
        assert "POST /session answered 404" in caplog.text

        with pytest.raises(UpgradeRefusedError) as err:
            async with open_docker_session(str(fake), session_id=new_id(), attachables=attachables):
                pytest.fail("opened a refused session")
    assert err.value.address == f"docker+unix://{fake}"
    assert "404 Not Found: page not found" in err.value.reason
    assert err.value.status == 404
    assert isinstance(err.value, DaemonUnreachableError)

    head_lines = heads[0].split("\r\n")
    assert head_lines[0] == "POST /session HTTP/1.1"
    headers = [tuple(line.split(": ", 1)) for line in head_lines[1:] if line]
    assert ("Upgrade", "h2c") in headers
    assert ("X-Docker-Expose-Session-Uuid", session_id) in headers
    assert ("X-Docker-Expose-Session-Name", "llblib-async") in headers
    methods = [v for k, v in headers if k == "X-Docker-Expose-Session-Grpc-Method"]
    assert methods == sorted(["/grpc.health.v1.Health/Check", *attachables[0].__mapping__()])


async def test_unreachable_docker_socket_is_a_typed_error(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    missing = tmp_path / "gone.sock"
    async with llblib_async.connect(buildkit_daemon.address) as real:
        conn = Connection(
            channel=real.connection.channel, address=real.address, is_moby=True, docker_socket=str(missing)
        )
        with pytest.raises(DaemonUnreachableError) as err:
            async with open_client_session(conn, session_id=new_id()):
                pytest.fail("opened a session on a missing socket")
    assert not isinstance(err.value, UpgradeRefusedError)  # no fallback
    assert err.value.address == f"docker+unix://{missing}"
    assert "no such socket" in err.value.reason

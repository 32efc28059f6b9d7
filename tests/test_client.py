"""connect() and the session-less calls, against a real buildkitd and a real dockerd."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

import llblib_async
from llblib_async.testing import BuildkitDaemon, DockerDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_info_reports_the_pinned_buildkit_version(buildkit_daemon: BuildkitDaemon) -> None:
    async with llblib_async.connect(buildkit_daemon.address) as client:
        info = await client.info()
        assert client.address == buildkit_daemon.address
        assert not client.is_moby
    assert info.package == "github.com/moby/buildkit"
    assert info.version == buildkit_daemon.version


async def test_list_workers_shows_the_oci_worker(buildkit_daemon: BuildkitDaemon) -> None:
    async with llblib_async.connect(buildkit_daemon.address) as client:
        workers = await client.list_workers()
    assert len(workers) == 1
    worker = workers[0]
    assert worker.executor == "oci"
    assert "linux/amd64" in worker.platforms
    assert worker.gc_policy, "buildkitd always has a default GC policy"


async def test_list_workers_filter_excludes_everything(buildkit_daemon: BuildkitDaemon) -> None:
    async with llblib_async.connect(buildkit_daemon.address) as client:
        assert await client.list_workers("id==no-such-worker") == []


async def test_disk_usage_and_prune_after_a_build(buildkit_daemon: BuildkitDaemon, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.bin").write_bytes(b"x" * 100_000)
    state = llblib_async.llb.scratch().copy(llblib_async.llb.local(ctx), "/", "/")
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(state)
        usage = await client.disk_usage()
        assert usage, "a finished build leaves cache records"
        assert any(r.record_type == "source.local" for r in usage)
        assert sum(r.size for r in usage) >= 100_000
        deleted = await client.prune(all=True)
        assert {r.id for r in deleted} >= {r.id for r in usage if not r.in_use}
        remaining = {r.id for r in await client.disk_usage()}
        assert not remaining & {r.id for r in deleted}


async def test_buildkit_host_env_is_the_default(
    buildkit_daemon: BuildkitDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDKIT_HOST", buildkit_daemon.address)
    async with llblib_async.connect() as client:
        assert client.address == buildkit_daemon.address
        assert (await client.info()).version == buildkit_daemon.version


async def test_missing_socket_is_unreachable_with_the_address(tmp_path: Path) -> None:
    address = f"unix://{tmp_path}/nobody.sock"
    with pytest.raises(llblib_async.DaemonUnreachableError) as info:
        # A missing socket fails at once: waiting for timeout=3600 would trip the hang guard.
        async with asyncio.timeout(60), llblib_async.connect(address, timeout=3600):
            pass
    assert info.value.address == address
    assert address in str(info.value)


async def test_silent_tcp_listener_times_out_promptly() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(llblib_async.DaemonUnreachableError) as info:
            async with asyncio.timeout(60), llblib_async.connect(address, timeout=2):  # 60: a hang guard
                pass
    assert address in str(info.value)
    assert "no answer within 2s" in str(info.value)  # the connect timeout ended it


@pytest.mark.parametrize("address", ["foo://bar", "tcp://", "tcp://host:notaport", "unix://relative/path"])
async def test_malformed_address_is_rejected(address: str) -> None:
    with pytest.raises(llblib_async.AddressError) as info:
        async with llblib_async.connect(address):
            pass
    assert info.value.address == address


async def test_docker_embedded_buildkit_connect_and_info(buildkit_dockerd: DockerDaemon) -> None:
    address = "docker+" + buildkit_dockerd.host
    async with llblib_async.connect(address) as client:
        assert client.is_moby
        info = await client.info()
        workers = await client.list_workers()
    # Docker 20.10 predates Control.Info: the version is unknown, the package says moby.
    assert info.package in ("moby", "github.com/moby/buildkit")
    assert [w.id for w in workers] == ["moby"]

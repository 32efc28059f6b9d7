"""SSH agent and socket forwarding (``moby.sshforward.v1.SSH``): offline splice semantics and live builds.

BuildKit exposes each ``llb.ssh_mount`` as a unix socket in the container; every
connection to it is one ``ForwardAgent`` stream, which the attachable splices to a new
connection to the target. Busybox has no unix-socket client, so the live tests copy a
tiny static Go client (``sockcat``, built once per session with the Go toolchain the
buildkit_daemon fixture needs anyway) into the busybox rootfs:

* ``sockcat cat SOCK``: stdin -> socket, then half-close; socket -> stdout until EOF
  (both directions at once);
* ``sockcat agent SOCK``: stdin -> socket, then print exactly one ssh-agent reply
  (``uint32`` length + body) without half-closing (ssh-agent drops a connection whose
  peer half-closed, possibly before answering).

The agent test uses a real ``ssh-agent``/``ssh-add``/``ssh-keygen`` (Debian
``openssh-client``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import struct
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import grpclib.client
import grpclib.server
import pytest
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

import llblib_async
from llblib_async import llb
from llblib_async._pb.moby.sshforward import v1 as ssh_pb
from llblib_async.attachables import ForwardedSocket, SocketForwards, SSHAgent, SSHForwardService
from llblib_async.attachables.sockets import CHECK_AGENT_METHOD, FORWARD_AGENT_METHOD
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.attachable_server import serve_attachable

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOCKCAT_GO = r"""
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
)

func die(err error) {
	fmt.Fprintln(os.Stderr, "sockcat:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "cat" && os.Args[1] != "agent") {
		fmt.Fprintln(os.Stderr, "usage: sockcat cat|agent SOCKET")
		os.Exit(2)
	}
	c, err := net.Dial("unix", os.Args[2])
	if err != nil {
		die(err)
	}
	conn := c.(*net.UnixConn)
	if os.Args[1] == "agent" {
		if _, err := io.Copy(conn, os.Stdin); err != nil {
			die(err)
		}
		var n uint32
		if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
			die(err)
		}
		binary.Write(os.Stdout, binary.BigEndian, n)
		if _, err := io.CopyN(os.Stdout, conn, int64(n)); err != nil {
			die(err)
		}
		return
	}
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, os.Stdin)
		if err == nil {
			err = conn.CloseWrite()
		}
		sent <- err
	}()
	if _, err := io.Copy(os.Stdout, conn); err != nil {
		die(err)
	}
	if err := <-sent; err != nil {
		die(err)
	}
}
"""


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture(scope="session")
def sockcat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the static ``sockcat`` binary (see the module docstring)."""
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if go is None:
        pytest.fail("these tests build a static helper with the Go toolchain (`go`), which is missing")
    src = tmp_path_factory.mktemp("sockcat-src")
    (src / "main.go").write_text(SOCKCAT_GO)
    out = tmp_path_factory.mktemp("sockcat")
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "", "GO111MODULE": "on"}
    proc = subprocess.run(
        [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(out / "sockcat"), "main.go"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if proc.returncode != 0:
        pytest.fail(f"building sockcat failed:\n{proc.stderr}")
    return out


def _rootfs(busybox_rootfs: Path, sockcat_dir: Path) -> llb.State:
    return (
        llb.scratch()
        .copy(llb.local(busybox_rootfs), "/", "/")
        .copy(llb.local(sockcat_dir), "/sockcat", "/usr/bin/sockcat")
    )


@asynccontextmanager
async def _echo_server(kind: str, tmp_path: Path) -> AsyncIterator[tuple[str, list[int]]]:
    """An echo server (echoes as it reads, closes after EOF); yields its URL and byte counts."""
    counts: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        try:
            while data := await reader.read(65536):
                n += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            counts.append(n)
            writer.close()

    if kind == "unix":
        path = tmp_path / "echo.sock"
        server = await asyncio.start_unix_server(handle, str(path))
        url = f"unix://{path}"
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield url, counts
    finally:
        server.close()
        await server.wait_closed()


async def _check(channel: grpclib.client.Channel, fid: str) -> None:
    async with channel.request(
        CHECK_AGENT_METHOD, Cardinality.UNARY_UNARY, ssh_pb.CheckAgentRequest, ssh_pb.CheckAgentResponse
    ) as stream:
        await stream.send_message(ssh_pb.CheckAgentRequest(id=fid), end=True)
        await stream.recv_message()


async def _forward(channel: grpclib.client.Channel, fid: str, chunks: list[bytes] | None = None) -> bytes:
    """One ForwardAgent call: send ``chunks`` then half-close (``None``: send nothing and
    never half-close, so only the target's EOF can end the call); return what came back."""
    async with channel.request(
        FORWARD_AGENT_METHOD,
        Cardinality.STREAM_STREAM,
        ssh_pb.BytesMessage,
        ssh_pb.BytesMessage,
        metadata={"buildkit.ssh.id": fid},
    ) as stream:
        await stream.send_request()
        for chunk in chunks or ():
            await stream.send_message(ssh_pb.BytesMessage(data=chunk))
        if chunks is not None:
            await stream.end()
        replies = [m.data async for m in stream]
        if chunks is None:
            await stream.end()  # grpclib wants it before leaving the block
    return b"".join(replies)


async def _export(daemon: BuildkitDaemon, state: llb.State, out: Path, service: SSHForwardService) -> None:
    with anyio.fail_after(120):
        async with llblib_async.connect(daemon.address) as client:
            await client.solve(
                llb.scratch().copy(state, "/out", "/", contents_only=True),
                exports=[llblib_async.LocalExport(out)],
                attachables=[service],
            )


# -- offline ---------------------------------------------------------------------------


async def test_targets_parse_and_validate(tmp_path: Path) -> None:
    assert ForwardedSocket.parse("unix:///run/x.sock") == ForwardedSocket("unix", path="/run/x.sock")
    assert ForwardedSocket.parse("tcp://127.0.0.1:5432") == ForwardedSocket(
        "tcp", host="127.0.0.1", port=5432
    )
    assert ForwardedSocket.parse("tcp://[::1]:80").host == "::1"
    assert str(ForwardedSocket.parse("tcp://[::1]:80")) == "tcp://[::1]:80"
    assert ForwardedSocket.parse(tmp_path / "s").path == str(tmp_path / "s")
    assert ForwardedSocket.parse("rel.sock").path == str(Path.cwd() / "rel.sock")
    for bad in (
        "unix://./sock",
        "tcp://host",
        "tcp://host:0",
        "tcp://host:99999",
        "http://x:1",
        "tcp://h:1/p",
    ):
        with pytest.raises(ValueError, match="forward"):
            ForwardedSocket.parse(bad)
    with pytest.raises(ValueError, match="declared twice: a"):
        _ = SocketForwards({"a": "/x"}) | SSHAgent({"a": "/y"})
    with pytest.raises(ValueError, match="duplicate forward id 'default'"):
        SocketForwards({"": "/x", "default": "/y"})
    merged = SocketForwards({"db": "tcp://127.0.0.1:1"}) | SSHAgent("/agent.sock")
    assert {k: str(v) for k, v in merged.forwards.items()} == {
        "db": "tcp://127.0.0.1:1",
        "default": "unix:///agent.sock",
    }
    assert repr(merged) == "SSHForwardService({'db': 'tcp://127.0.0.1:1', 'default': 'unix:///agent.sock'})"


async def test_ssh_agent_defaults_to_ssh_auth_sock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    assert SSHAgent().forwards == {"default": ForwardedSocket.unix("/tmp/agent.sock")}
    monkeypatch.delenv("SSH_AUTH_SOCK")
    with pytest.raises(ValueError, match="SSH_AUTH_SOCK is not set"):
        SSHAgent()


async def test_check_agent_and_undeclared_ids(tmp_path: Path) -> None:
    service = SocketForwards({"default": tmp_path / "nothing.sock", "db": "tcp://127.0.0.1:9"})
    with anyio.fail_after(20):
        async with serve_attachable(service, tmp_path / "grpc.sock") as channel:
            await _check(channel, "")  # "" is "default"
            await _check(channel, "db")
            with pytest.raises(GRPCError) as err:
                await _check(channel, "nope")
            assert err.value.status is Status.NOT_FOUND
            assert err.value.message == "unset ssh forward key nope (declared: db, default)"
            for fid, status, text in (
                ("nope", Status.NOT_FOUND, "unset ssh forward key nope"),
                ("default", Status.UNAVAILABLE, "ssh forward default: cannot connect to unix://"),
            ):
                with pytest.raises(GRPCError) as err:
                    await _forward(channel, fid, [b"x"])
                assert err.value.status is status
                assert text in (err.value.message or "")


async def test_daemon_reset_drops_the_target_connection(tmp_path: Path) -> None:
    """A reset call (the container's connection broke) closes our connection to the target."""
    received = asyncio.Event()
    ended = asyncio.Event()

    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        received.set()
        await reader.read()  # returns at EOF: we closed our end
        ended.set()
        writer.close()

    server = await asyncio.start_unix_server(idle, str(tmp_path / "idle.sock"))
    service = SocketForwards({"idle": tmp_path / "idle.sock"})
    try:
        with anyio.fail_after(20):
            async with serve_attachable(service, tmp_path / "grpc.sock") as channel:
                stream = channel.request(
                    FORWARD_AGENT_METHOD,
                    Cardinality.STREAM_STREAM,
                    ssh_pb.BytesMessage,
                    ssh_pb.BytesMessage,
                    metadata={"buildkit.ssh.id": "idle"},
                )
                await stream.__aenter__()
                await stream.send_request()
                await stream.send_message(ssh_pb.BytesMessage(data=b"ping"))
                await received.wait()
                await stream.cancel()
                await ended.wait()
                with contextlib.suppress(Exception):
                    await stream.__aexit__(None, None, None)
    finally:
        server.close()
        await server.wait_closed()
    assert service.connections == {"idle": 1}
    assert service.active == 0


async def test_splice_half_closes_both_ways(tmp_path: Path) -> None:
    """Our EOF reaches the target as a half-close; the target's EOF ends the call."""
    got: list[bytes] = []

    async def half_close_aware(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the forwarded half-close
        got.append(data)
        writer.write(b"got %d bytes" % len(data))  # can still answer after it
        writer.close()

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello, then bye")  # speaks first and closes: no client EOF needed
        writer.close()

    s1 = await asyncio.start_unix_server(half_close_aware, str(tmp_path / "a.sock"))
    s2 = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = s2.sockets[0].getsockname()[1]
    service = SocketForwards({"a": tmp_path / "a.sock", "b": f"tcp://127.0.0.1:{port}"})
    try:
        with anyio.fail_after(20):
            async with serve_attachable(service, tmp_path / "grpc.sock") as channel:
                reply = await _forward(channel, "a", [b"x" * 100_000, b"y" * 5])
                assert reply == b"got 100005 bytes"
                assert got == [b"x" * 100_000 + b"y" * 5]
                assert await _forward(channel, "b") == b"hello, then bye"
    finally:
        for s in (s1, s2):
            s.close()
            await s.wait_closed()
    assert service.connections == {"a": 1, "b": 1}
    assert service.active == 0


# -- live ------------------------------------------------------------------------------


async def test_unix_and_tcp_echo_round_trip(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, sockcat_dir: Path, tmp_path: Path
) -> None:
    payload_dir = tmp_path / "payload"
    payload_dir.mkdir()
    payload = os.urandom(1536 * 1024)  # bigger than every window and socket buffer on the way
    (payload_dir / "data").write_bytes(payload)
    async with (
        _echo_server("unix", tmp_path) as (unix_url, unix_counts),
        _echo_server("tcp", tmp_path) as (tcp_url, tcp_counts),
    ):
        service = SocketForwards({"unix-echo": unix_url, "tcp-echo": tcp_url})
        st = _rootfs(buildkit_busybox_rootfs, sockcat_dir).run(
            "set -e; mkdir /out;"
            " sockcat cat /run/unix.sock < /in/data > /out/unix &"
            " sockcat cat /run/tcp.sock < /in/data > /out/tcp &"
            " echo -n hi | sockcat cat /run/tcp.sock > /out/small &"
            " wait %1; wait %2; wait %3;"
            ' stat -c "%u:%g %a" /run/unix.sock > /out/stat-unix;'
            ' stat -c "%u:%g %a" /run/tcp.sock > /out/stat-tcp',
            shell=True,
            mounts=[
                llb.bind("/in", llb.local(payload_dir), readonly=True),
                llb.ssh_mount("/run/unix.sock", id="unix-echo"),
                llb.ssh_mount("/run/tcp.sock", id="tcp-echo", uid=65534, gid=65534, mode=0o660),
            ],
            ignore_cache=True,
        )
        out = tmp_path / "out"
        await _export(buildkit_daemon, st.root, out, service)
    assert hashlib.sha256((out / "unix").read_bytes()).digest() == hashlib.sha256(payload).digest()
    assert hashlib.sha256((out / "tcp").read_bytes()).digest() == hashlib.sha256(payload).digest()
    assert (out / "small").read_bytes() == b"hi"
    assert (out / "stat-unix").read_text() == "0:0 600\n"
    assert (out / "stat-tcp").read_text() == "65534:65534 660\n"
    assert unix_counts == [len(payload)]
    assert sorted(tcp_counts) == [2, len(payload)]
    assert service.connections == {"unix-echo": 1, "tcp-echo": 2}
    assert service.active == 0


async def test_undeclared_forward_ids_fail_clearly(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, sockcat_dir: Path, tmp_path: Path
) -> None:
    base = _rootfs(buildkit_busybox_rootfs, sockcat_dir)
    service = SocketForwards({"declared": tmp_path / "x.sock"})
    with anyio.fail_after(120):
        async with llblib_async.connect(buildkit_daemon.address) as client:
            undeclared = base.run(
                "true", mounts=[llb.ssh_mount("/run/x.sock", id="other")], ignore_cache=True
            )
            with pytest.raises(llblib_async.SolveError, match="unset ssh forward key other"):
                await client.solve(undeclared.root, attachables=[service])
            # without any forwarding service the daemon says so itself
            with pytest.raises(llblib_async.SolveError, match='no SSH key "other" forwarded from the client'):
                await client.solve(undeclared.root)
            optional = base.run(
                "test ! -e /run/x.sock",
                shell=True,
                mounts=[llb.ssh_mount("/run/x.sock", id="other", optional=True)],
                ignore_cache=True,
            )
            await client.solve(optional.root, attachables=[service])
    assert service.connections == {}


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A private ``ssh-agent`` holding one fresh ed25519 key; yields (socket, public key file)."""
    for tool in ("ssh-agent", "ssh-add", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `apt-get install -y --no-install-recommends openssh-client`")
    sock = tmp_path / "agent.sock"
    key = tmp_path / "id_test"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llblib-test-key", "-f", str(key)],
        check=True,
        timeout=30,
    )
    # Without -D the agent forks once its socket listens and prints its pid.
    started = subprocess.run(
        ["ssh-agent", "-s", "-a", str(sock)], check=True, capture_output=True, text=True, timeout=30
    )
    pid = int(started.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        subprocess.run(
            ["ssh-add", "-q", str(key)],
            check=True,
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            capture_output=True,
            timeout=30,
        )
        yield str(sock), key.with_suffix(".pub")
    finally:
        os.kill(pid, signal.SIGTERM)


async def test_ssh_agent_is_forwarded(
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_rootfs: Path,
    sockcat_dir: Path,
    tmp_path: Path,
    ssh_agent: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sock, pub = ssh_agent
    monkeypatch.setenv("SSH_AUTH_SOCK", sock)
    async with _echo_server("unix", tmp_path) as (echo_url, _):
        service = SSHAgent() | SocketForwards({"echo": echo_url})
        # SSH_AGENTC_REQUEST_IDENTITIES (11); the mount without dest is exported as $SSH_AUTH_SOCK.
        st = _rootfs(buildkit_busybox_rootfs, sockcat_dir).run(
            "set -e; mkdir /out;"
            " printf '\\000\\000\\000\\001\\013' | sockcat agent \"$SSH_AUTH_SOCK\" > /out/answer;"
            ' echo "$SSH_AUTH_SOCK" > /out/env; echo -n ok | sockcat cat /run/echo.sock > /out/echo',
            shell=True,
            mounts=[llb.ssh_mount(), llb.ssh_mount("/run/echo.sock", id="echo")],
            ignore_cache=True,
        )
        out = tmp_path / "out"
        await _export(buildkit_daemon, st.root, out, service)
    answer = (out / "answer").read_bytes()
    (length,) = struct.unpack(">I", answer[:4])
    body = answer[4:]
    assert len(body) == length
    assert body[0] == 12  # SSH_AGENT_IDENTITIES_ANSWER
    (nkeys,) = struct.unpack(">I", body[1:5])
    assert nkeys == 1
    (blob_len,) = struct.unpack(">I", body[5:9])
    blob = body[9 : 9 + blob_len]
    (comment_len,) = struct.unpack(">I", body[9 + blob_len : 13 + blob_len])
    comment = body[13 + blob_len : 13 + blob_len + comment_len]
    assert blob == base64.b64decode(pub.read_text().split()[1])
    assert comment == b"llblib-test-key"
    assert (out / "env").read_text() == "/run/buildkit/ssh_agent.0\n"
    assert (out / "echo").read_bytes() == b"ok"
    assert service.connections == {"default": 1, "echo": 1}


async def test_unreachable_target_closes_the_container_connection(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, sockcat_dir: Path, tmp_path: Path
) -> None:
    """A declared target nobody listens on: the container's connection ends, nothing hangs."""
    service = SocketForwards({"gone": tmp_path / "nobody-listens.sock"})
    st = _rootfs(buildkit_busybox_rootfs, sockcat_dir).run(
        "mkdir /out; echo -n data | sockcat cat /run/gone.sock > /out/got; echo $? > /out/rc",
        shell=True,
        mounts=[llb.ssh_mount("/run/gone.sock", id="gone")],
        ignore_cache=True,
    )
    out = tmp_path / "out"
    await _export(buildkit_daemon, st.root, out, service)
    assert (out / "got").read_bytes() == b""
    assert (out / "rc").read_text() in ("0\n", "1\n")  # EOF or reset, depending on timing
    assert service.connections == {"gone": 1}
    assert service.active == 0

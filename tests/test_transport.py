"""Addresses, connections and gRPC error mapping (``_wire.address``, ``.connection``, ``.grpc_errors``).

Unit tests run against in-process fakes (grpclib servers, a fake Docker API socket, silent
listeners); the ``daemon``/``docker`` tests use real daemons from the ``buildkit_daemon`` and
``buildkit_dockerd`` fixtures of :mod:`llblib_async.testing.plugin`, and the TLS tests start a
buildkitd of their own with a TCP+TLS listener (certificates made with the openssl CLI).
Every test that waits on the network is bounded by a ``timeout=`` argument, so "never
hangs" is tested, not assumed.  Failures that must not wait at all (refused, missing
file, bad TLS) are expected under a connect timeout no test would outlive (``NO_TIMEOUT``):
waiting for it instead of failing at once trips the hang guard.  No test asserts elapsed
time; ``nox -s bench`` measures speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server

from llblib_async._pb import pb
from llblib_async._pb.moby.buildkit import v1 as control
from llblib_async._pb.moby.buildkit.v1 import types as bktypes
from llblib_async._wire import address as wire_address
from llblib_async._wire.address import Address, parse_address
from llblib_async._wire.connection import open_connection
from llblib_async._wire.docker_http import docker_hijack
from llblib_async._wire.grpc_errors import (
    TYPE_EXIT_MESSAGE,
    TYPE_STACK,
    TYPE_VERTEX,
    BuildKitStatusDetailsCodec,
    ErrorDetail,
    error_details,
    translate_grpc_error,
    translating_errors,
)
from llblib_async._wire.tls import TLSConfig
from llblib_async.errors import (
    AddressError,
    BuildKitError,
    ConnectionLostError,
    DaemonError,
    DaemonUnreachableError,
    SolveError,
)
from llblib_async.testing import BuildkitDaemon, DockerDaemon

# The connect timeout of the "fails at once" cases (refused, missing file, bad TLS): far
# beyond HANG_GUARD, so a connect that waited for its timeout instead of failing is a hang.
NO_TIMEOUT = 3600.0
HANG_GUARD = 60.0  # generous: only a hang trips it, never a slow machine


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Short on purpose: unix socket paths are limited to 107 bytes and pytest's tmp_path
    # (which embeds the test name) can exceed that.
    d = Path(tempfile.mkdtemp(prefix="llbt-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def expect_unreachable(
    address: str | None,
    *,
    timeout: float = NO_TIMEOUT,
    **kw: Any,
) -> str:
    """open_connection must raise DaemonUnreachableError (not hang); returns its message.

    With the default ``timeout`` the error must come without waiting for the timeout.
    """
    with pytest.raises(DaemonUnreachableError) as info:
        async with asyncio.timeout(HANG_GUARD):
            await open_connection(address, timeout=timeout, **kw)
    if address is not None:
        assert info.value.address == str(parse_address(address))
    return str(info.value)


# --------------------------------------------------------------------------------------------
# parse_address


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("unix:///run/buildkit/buildkitd.sock", Address("unix", path="/run/buildkit/buildkitd.sock"), None),
        ("UNIX:///x.sock", Address("unix", path="/x.sock"), "unix:///x.sock"),
        # Socket paths are literal: no percent-decoding, '?' and '#' are path characters.
        ("unix:///odd%20name?x#y.sock", Address("unix", path="/odd%20name?x#y.sock"), None),
        ("tcp://127.0.0.1:1234", Address("tcp", host="127.0.0.1", port=1234), None),
        ("tcp://localhost:1234/", Address("tcp", host="localhost", port=1234), "tcp://localhost:1234"),
        ("tcp://buildkitd.example.com:443", Address("tcp", host="buildkitd.example.com", port=443), None),
        ("tcp://[::1]:1234", Address("tcp", host="::1", port=1234), None),
        ("tcp://[fe80::1%eth0]:65535", Address("tcp", host="fe80::1%eth0", port=65535), None),
        ("docker://", Address("docker"), None),
        ("docker+unix:///var/run/docker.sock", Address("docker", path="/var/run/docker.sock"), None),
    ],
)
def test_parse_address_valid(text: str, expected: Address, canonical: str | None) -> None:
    addr = parse_address(text)
    assert addr == expected
    assert str(addr) == (canonical or text)
    assert parse_address(str(addr)) == addr  # canonical form round-trips


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" unix:///x.sock", "whitespace"),
        ("unix:///x.sock\n", "whitespace"),
        ("/run/buildkit/buildkitd.sock", "did you mean 'unix:///run/buildkit/buildkitd.sock'"),
        ("buildkitd.sock", "missing scheme"),
        ("unix://", "missing socket path"),
        ("unix://relative/x.sock", "must be absolute"),
        ("unix:///run/buildkit/", "directory"),
        ("unix:///a\0b", "NUL"),
        ("unix:///" + "a" * 120, "longer than"),
        ("tcp://", "missing port"),
        ("tcp://host", "missing port"),
        ("tcp://host:", "missing port"),
        ("tcp://:1234", "missing host"),
        ("tcp://host:0", "invalid port"),
        ("tcp://host:65536", "invalid port"),
        ("tcp://host:12ab", "invalid port"),
        ("tcp://host:\uff11\uff12", "invalid port"),  # fullwidth digits pass str.isdigit()
        ("tcp://host:-1", "invalid port"),
        ("tcp://::1:1234", "brackets"),
        ("tcp://[::1]", "missing port"),
        ("tcp://[::1", "unterminated"),
        ("tcp://[not-v6]:1", "not an IPv6 address"),
        ("tcp://[::1]x:1", "missing port"),
        ("tcp://user@host:1", "user info"),
        ("tcp://host:1/path", "a path"),
        ("tcp://host:1?x=1", "a query"),
        ("tcp://host:1#frag", "a fragment"),
        ("tcp://-host:1", "invalid host name"),
        ("tcp://ho$t:1", "invalid host name"),
        ("docker://somehost", "docker+unix://"),
        ("docker:///var/run/docker.sock", "docker+unix://"),
        ("docker+unix://", "missing socket path"),
        ("docker+unix://var/run/docker.sock", "must be absolute"),
        ("docker-container://buildkitd", "connection helper is not supported"),
        ("kube-pod://buildkitd-0", "connection helper is not supported"),
        ("ssh://me@host", "connection helper is not supported"),
        ("npipe:////./pipe/buildkitd", "connection helper is not supported"),
        ("http://localhost:1234", "unsupported scheme 'http'"),
    ],
)
def test_parse_address_malformed(text: str, reason: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert info.value.address == text
    assert reason in info.value.reason
    assert isinstance(info.value, BuildKitError)
    assert isinstance(info.value, ValueError)


async def test_open_connection_rejects_malformed_address_without_dialing() -> None:
    with pytest.raises(AddressError):
        await open_connection("tcp://nohost", timeout=5)
    with pytest.raises(ValueError, match="timeout"):
        await open_connection("unix:///x.sock", timeout=0)


# --------------------------------------------------------------------------------------------
# TLSConfig


def test_tls_config_validation() -> None:
    with pytest.raises(ValueError, match="key given without cert"):
        TLSConfig(key="/k.pem")
    ctx = TLSConfig().ssl_context()  # system CAs, no client cert
    assert ctx.check_hostname


async def test_tls_needs_tcp_address(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AddressError, match="tcp://"):
        await open_connection("unix:///x.sock", tls=TLSConfig())
    monkeypatch.delenv("BUILDKIT_HOST", raising=False)
    with pytest.raises(AddressError, match="tcp://"):
        await open_connection(None, tls=TLSConfig())


async def test_tls_files_missing() -> None:
    msg = await expect_unreachable("tcp://127.0.0.1:1", tls=TLSConfig(ca_cert="/nonexistent/ca.pem"))
    assert "cannot load the TLS files" in msg
    assert "/nonexistent/ca.pem" in msg


# --------------------------------------------------------------------------------------------
# Error details and translation (no daemon)


def _grpc_error(status: Status, message: str, details: list[ErrorDetail]) -> GRPCError:
    codec = BuildKitStatusDetailsCodec()
    wire = codec.encode(status, message, details)
    return GRPCError(status, message, codec.decode(status, message, wire))


def test_codec_round_trip() -> None:
    details = [
        ErrorDetail(TYPE_STACK, {"frames": [{"Name": "main.main", "Line": 1}]}),
        ErrorDetail(TYPE_VERTEX, {"digest": "sha256:abc"}),
        ErrorDetail("type.googleapis.com/some.Proto", b"\x08\x01"),  # non-JSON payload stays bytes
    ]
    err = _grpc_error(Status.UNKNOWN, "boom", details)
    assert error_details(err) == details


def test_codec_decode_never_raises() -> None:
    codec = BuildKitStatusDetailsCodec()
    garbage = b"\x08"  # a varint cut short: betterproto2 raises on it (it is lenient elsewhere)
    assert codec.decode(Status.UNKNOWN, "x", garbage) == [ErrorDetail("", garbage)]
    # A +json type URL with a non-JSON value keeps the raw bytes.
    wire = codec.encode(Status.UNKNOWN, "x", [ErrorDetail(TYPE_VERTEX, b"not json")])
    assert codec.decode(Status.UNKNOWN, "x", wire) == [ErrorDetail(TYPE_VERTEX, b"not json")]


def test_translate_solve_error_from_details() -> None:
    err = _grpc_error(
        Status.UNKNOWN,
        'process "/bin/sh -c exit 42" did not complete successfully: exit code: 42',
        [
            ErrorDetail(TYPE_STACK, {"frames": []}),
            ErrorDetail(TYPE_VERTEX, {"digest": "sha256:0123"}),
            ErrorDetail(TYPE_EXIT_MESSAGE, {"Code": 42}),
        ],
    )
    out = translate_grpc_error(err, method="Solve", address="unix:///x.sock")
    assert isinstance(out, SolveError)
    assert (out.vertex, out.exit_code) == ("sha256:0123", 42)
    assert out.message.startswith('process "/bin/sh -c exit 42"')


def test_translate_vertex_without_exit_code_on_any_method() -> None:
    err = _grpc_error(
        Status.UNKNOWN, "failed to compute cache key", [ErrorDetail(TYPE_VERTEX, {"digest": "sha256:9"})]
    )
    out = translate_grpc_error(err, method="LLBBridge.Solve", address="a")
    assert isinstance(out, SolveError)
    assert (out.vertex, out.exit_code) == ("sha256:9", None)


def test_translate_old_daemon_exit_code_from_message() -> None:
    # Docker 20.10 sends no details at all for a failed RUN.
    err = GRPCError(Status.UNKNOWN, "executor failed running [/bin/sh -c exit 3]: exit code: 3")
    out = translate_grpc_error(err, method="/moby.buildkit.v1.Control/Solve", address="a")
    assert isinstance(out, SolveError)
    assert (out.vertex, out.exit_code) == (None, 3)


def test_translate_daemon_errors() -> None:
    out = translate_grpc_error(GRPCError(Status.NOT_FOUND, "no such job x"), method="Status", address="a")
    assert isinstance(out, DaemonError)
    assert (out.method, out.status, out.message) == ("Status", "NOT_FOUND", "no such job x")
    # Only UNKNOWN means "the build failed"; a cancelled Solve is about the call.
    out = translate_grpc_error(GRPCError(Status.CANCELLED, "context canceled"), method="Solve", address="a")
    assert isinstance(out, DaemonError)
    assert out.status == "CANCELLED"
    # Details from a foreign codec (or none) must not break translation.
    out = translate_grpc_error(GRPCError(Status.INTERNAL, None, "junk"), method="Info", address="a")
    assert isinstance(out, DaemonError)
    assert out.message == ""


def test_translate_connection_failures() -> None:
    for exc in (
        StreamTerminatedError("Connection lost"),
        ConnectionResetError(104, "reset"),
        BrokenPipeError(),
    ):
        out = translate_grpc_error(exc, method="Solve", address="unix:///x.sock")
        assert isinstance(out, ConnectionLostError), exc
        assert out.address == "unix:///x.sock"
        assert out.reason.startswith("Solve: ")
    out = translate_grpc_error(TimeoutError(), method="Prune", address="a")
    assert isinstance(out, DaemonError)
    assert out.status == "DEADLINE_EXCEEDED"
    same = DaemonUnreachableError("a", "r")
    assert translate_grpc_error(same, method="x", address="a") is same


def test_translating_errors_context_manager() -> None:
    original = GRPCError(Status.PERMISSION_DENIED, "nope")
    with pytest.raises(DaemonError) as info, translating_errors("Prune", "a"):
        raise original
    assert info.value.__cause__ is original
    with pytest.raises(KeyError), translating_errors("Prune", "a"):
        raise KeyError("programming errors pass through")


# --------------------------------------------------------------------------------------------
# In-process fakes: a Control server, silent listeners, a fake Docker API


class FakeControl:
    """Enough of moby.buildkit.v1.Control to be connected to: ListWorkers answers, DiskUsage
    fails with BuildKit-style details, Prune resets its stream when ``reset_prune`` is set."""

    def __init__(self, worker_id: str = "fake0") -> None:
        self.worker_id = worker_id
        self.prune_started = asyncio.Event()
        self.reset_prune = asyncio.Event()

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/moby.buildkit.v1.Control/ListWorkers": Handler(
                self.list_workers,
                Cardinality.UNARY_UNARY,
                control.ListWorkersRequest,
                control.ListWorkersResponse,
            ),
            "/moby.buildkit.v1.Control/DiskUsage": Handler(
                self.disk_usage, Cardinality.UNARY_UNARY, control.DiskUsageRequest, control.DiskUsageResponse
            ),
            "/moby.buildkit.v1.Control/Prune": Handler(
                self.prune, Cardinality.UNARY_STREAM, control.PruneRequest, control.UsageRecord
            ),
        }

    async def list_workers(self, stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(
            control.ListWorkersResponse(record=[bktypes.WorkerRecord(id=self.worker_id)])
        )

    async def disk_usage(self, stream: Any) -> None:
        await stream.recv_message()
        raise GRPCError(
            Status.UNKNOWN,
            "boom",
            [
                ErrorDetail(TYPE_VERTEX, {"digest": "sha256:feed"}),
                ErrorDetail(TYPE_EXIT_MESSAGE, {"Code": 7}),
            ],
        )

    async def prune(self, stream: Any) -> None:
        await stream.recv_message()
        self.prune_started.set()
        await self.reset_prune.wait()
        await stream.cancel()  # RST_STREAM


class NoServices:
    """A gRPC server that implements nothing (every call: UNIMPLEMENTED)."""

    def __mapping__(self) -> dict[str, Handler]:
        return {}


@asynccontextmanager
async def grpc_server(path: Path, *services: Any) -> AsyncIterator[Server]:
    server = Server(list(services), status_details_codec=BuildKitStatusDetailsCodec())
    await server.start(path=str(path))
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def http_server(path: Path, respond: bytes) -> AsyncIterator[list[bytes]]:
    """A unix-socket HTTP/1.1 server sending ``respond`` (in one write) after each request head."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(respond)
            await writer.drain()
            # Keep the socket open until the client is done: a 101 connection is "theirs".
            await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        yield heads
    finally:
        server.close()
        await server.wait_closed()


def silent_listener(family: socket.AddressFamily, addr: Any) -> socket.socket:
    """Listens (the kernel completes connects into the backlog) but never reads or writes."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind(addr)
    s.listen(8)
    return s


async def test_connect_fake_control_and_decode_details(sockdir: Path) -> None:
    path = sockdir / "fake.sock"
    async with grpc_server(path, FakeControl()):
        conn = await open_connection(f"unix://{path}", timeout=5)
        try:
            assert conn.address == f"unix://{path}"
            assert conn.tried == [conn.address]
            assert not conn.is_moby
            assert conn.docker_api_version is None
            assert [w.id for w in conn.workers] == ["fake0"]
            with pytest.raises(GRPCError) as info:
                await control.ControlStub(conn.channel).disk_usage(control.DiskUsageRequest())
            # Details arrived through grpc-status-details-bin and our codec.
            assert error_details(info.value)[0] == ErrorDetail(TYPE_VERTEX, {"digest": "sha256:feed"})
            out = translate_grpc_error(info.value, method="DiskUsage", address=conn.address)
            assert isinstance(out, SolveError)
            assert (out.vertex, out.exit_code) == ("sha256:feed", 7)
        finally:
            await conn.close()


async def test_moby_detected_from_worker_id(sockdir: Path) -> None:
    # E.g. Docker >= 29.2 serving gRPC natively on its socket, reached as unix://.
    path = sockdir / "fake.sock"
    async with (
        grpc_server(path, FakeControl(worker_id="moby")),
        await open_connection(f"unix://{path}", timeout=5) as conn,
    ):
        assert conn.is_moby
        assert conn.docker_api_version is None


async def test_stream_reset_mid_call_is_connection_lost(sockdir: Path) -> None:
    path = sockdir / "fake.sock"
    fake = FakeControl()
    async with grpc_server(path, fake), await open_connection(f"unix://{path}", timeout=5) as conn:

        async def prune() -> None:
            async for _ in control.ControlStub(conn.channel).prune(control.PruneRequest()):
                pass

        call = asyncio.create_task(prune())
        async with asyncio.timeout(5):
            await fake.prune_started.wait()
            fake.reset_prune.set()
            with pytest.raises(StreamTerminatedError) as info:
                await call
        out = translate_grpc_error(info.value, method="Prune", address=conn.address)
        assert isinstance(out, ConnectionLostError)
        assert out.address == conn.address


async def test_redial_after_connection_drop(sockdir: Path) -> None:
    path = sockdir / "fake.sock"
    async with grpc_server(path, FakeControl()):
        conn = await open_connection(f"unix://{path}", timeout=5)
        stub = control.ControlStub(conn.channel)
        conn.channel.close()  # the transport goes; the next call dials again through our dialer
        reply = await stub.list_workers(control.ListWorkersRequest(), timeout=5)
        assert [w.id for w in reply.record] == ["fake0"]
    conn.channel.close()
    try:
        # The server is gone (Python >= 3.13 also removes its socket file on close): the
        # redial fails at once, not after the call's timeout (that would be a TimeoutError).
        with pytest.raises((ConnectionRefusedError, FileNotFoundError)) as info:
            async with asyncio.timeout(HANG_GUARD):
                await stub.list_workers(control.ListWorkersRequest(), timeout=NO_TIMEOUT)
        out = translate_grpc_error(info.value, method="ListWorkers", address=conn.address)
        assert isinstance(out, ConnectionLostError)
    finally:
        await conn.close()


async def test_unreachable_missing_socket_file(sockdir: Path) -> None:
    msg = await expect_unreachable(f"unix://{sockdir}/nope.sock")
    assert "no such socket file" in msg


async def test_unreachable_socket_nobody_listens_on(sockdir: Path) -> None:
    path = sockdir / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # the file exists, nothing listens
    s.close()
    msg = await expect_unreachable(f"unix://{path}")
    assert "connection refused" in msg


async def test_unreachable_tcp_port_nobody_listens_on() -> None:
    # Bound but not listening: the port is ours (no race with other tests), connects are refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        msg = await expect_unreachable(f"tcp://127.0.0.1:{port}")
    assert "connection refused" in msg


async def test_unreachable_tcp_listener_that_never_speaks() -> None:
    with silent_listener(socket.AF_INET, ("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
        msg = await expect_unreachable(f"tcp://127.0.0.1:{port}", timeout=0.5)
    assert "no answer within 0.5s while waiting for a gRPC answer" in msg


async def test_unreachable_tls_handshake_that_never_completes() -> None:
    with silent_listener(socket.AF_INET, ("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
        msg = await expect_unreachable(f"tcp://127.0.0.1:{port}", tls=TLSConfig(), timeout=0.5)
    assert "no answer within 0.5s while connecting" in msg


async def test_unreachable_unix_listener_that_never_speaks(sockdir: Path) -> None:
    with silent_listener(socket.AF_UNIX, str(sockdir / "silent.sock")):
        await expect_unreachable(f"unix://{sockdir}/silent.sock", timeout=0.5)
        # The Docker path blocks in GET /_ping instead; bounded all the same.
        msg = await expect_unreachable(f"docker+unix://{sockdir}/silent.sock", timeout=0.5)
    assert "GET /_ping" in msg


async def test_unreachable_http1_server(sockdir: Path) -> None:
    path = sockdir / "http.sock"
    async with http_server(
        path, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ):
        msg = await expect_unreachable(f"unix://{path}")
    assert "the server answered in HTTP/1.x: 'HTTP/1.1 400 Bad Request'" in msg
    assert "not an HTTP/2 gRPC server" in msg


async def test_unreachable_grpc_server_that_is_not_buildkit(sockdir: Path) -> None:
    path = sockdir / "grpc.sock"
    async with grpc_server(path, NoServices()):
        msg = await expect_unreachable(f"unix://{path}")
    # grpclib answers unknown methods without a content-type, which its client reports as
    # UNKNOWN; Go gRPC servers say UNIMPLEMENTED.  Either way: not BuildKit.
    assert "ListWorkers failed: UNKNOWN" in msg
    assert "not a BuildKit daemon" in msg


async def test_unreachable_docker_socket_that_is_not_docker(sockdir: Path) -> None:
    path = sockdir / "fake.sock"
    async with grpc_server(path, FakeControl()):  # HTTP/2 only: an HTTP/1.1 request is refused
        msg = await expect_unreachable(f"docker+unix://{path}")
    assert "not a Docker API socket" in msg
    async with http_server(sockdir / "h.sock", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"):
        msg = await expect_unreachable(f"docker+unix://{sockdir}/h.sock")
    assert "GET /_ping answered 404" in msg


# --------------------------------------------------------------------------------------------
# docker_hijack against a fake Docker API


UPGRADED = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


async def test_docker_hijack_keeps_bytes_after_101(sockdir: Path) -> None:
    path = sockdir / "docker.sock"
    # The first HTTP/2 bytes arrive in the same segment as the 101: none may be swallowed.
    async with http_server(path, UPGRADED + b"PRI * HTTP/2.0") as heads:
        sock = await docker_hijack(
            str(path), "/session", [("X-Docker-Expose-Session-Uuid", "abc")], timeout=5
        )
        try:
            loop = asyncio.get_running_loop()
            got = b""
            async with asyncio.timeout(5):
                while len(got) < len(b"PRI * HTTP/2.0"):
                    got += await loop.sock_recv(sock, 64)
            assert got == b"PRI * HTTP/2.0"
        finally:
            sock.close()
    head = heads[0].decode()
    assert head.startswith("POST /session HTTP/1.1\r\n")
    for line in (
        "Connection: Upgrade",
        "Upgrade: h2c",
        "Content-Length: 0",
        "X-Docker-Expose-Session-Uuid: abc",
    ):
        assert f"\r\n{line}\r\n" in head


async def test_docker_hijack_refused(sockdir: Path) -> None:
    path = sockdir / "docker.sock"
    body = b'{"message":"page not found"}\n'
    resp = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    async with http_server(path, resp):
        with pytest.raises(DaemonUnreachableError) as info:
            await docker_hijack(str(path), "/grpc", timeout=5)
    assert info.value.address == f"docker+unix://{path}"
    assert "POST /grpc answered 404 Not Found: page not found" in info.value.reason


async def test_docker_hijack_bounded_and_validated(sockdir: Path) -> None:
    with pytest.raises(ValueError, match="header"):
        await docker_hijack(str(sockdir / "x.sock"), "/session", [("X-Evil", "a\r\nInjected: 1")])
    with pytest.raises(DaemonUnreachableError, match="no such socket file"):
        await docker_hijack(str(sockdir / "x.sock"), "/session", timeout=5)
    with (
        silent_listener(socket.AF_UNIX, str(sockdir / "silent.sock")),
        pytest.raises(DaemonUnreachableError, match=r"no answer to POST /grpc within 0\.3s"),
    ):
        async with asyncio.timeout(HANG_GUARD):
            await docker_hijack(str(sockdir / "silent.sock"), "/grpc", timeout=0.3)


# --------------------------------------------------------------------------------------------
# Default resolution (address=None)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, sockdir: Path) -> pytest.MonkeyPatch:
    """No BUILDKIT_HOST/DOCKER_HOST/XDG_RUNTIME_DIR; the default sockets point into ``sockdir``."""
    for var in ("BUILDKIT_HOST", "DOCKER_HOST", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(wire_address, "DEFAULT_BUILDKITD_SOCKET", str(sockdir / "buildkitd.sock"))
    monkeypatch.setattr(wire_address, "DEFAULT_DOCKER_SOCKET", str(sockdir / "docker.sock"))
    return monkeypatch


async def test_default_nothing_found(clean_env: pytest.MonkeyPatch, sockdir: Path) -> None:
    with pytest.raises(DaemonUnreachableError) as info:
        async with asyncio.timeout(HANG_GUARD):
            await open_connection(timeout=NO_TIMEOUT)  # missing files: no waiting for the timeout
    assert info.value.tried == [f"unix://{sockdir}/buildkitd.sock", f"docker+unix://{sockdir}/docker.sock"]
    assert "no BuildKit daemon found" in info.value.reason
    assert "BUILDKIT_HOST" in info.value.reason


async def test_default_buildkitd_socket(clean_env: pytest.MonkeyPatch, sockdir: Path) -> None:
    async with (
        grpc_server(sockdir / "buildkitd.sock", FakeControl()),
        await open_connection(timeout=5) as conn,
    ):
        assert conn.address == f"unix://{sockdir}/buildkitd.sock"
        assert conn.tried == [conn.address]


async def test_default_falls_back_to_docker_after_dead_buildkitd(
    clean_env: pytest.MonkeyPatch, sockdir: Path
) -> None:
    # A stale buildkitd socket (daemon gone) must not stop the search.
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sockdir / "buildkitd.sock"))
    s.close()
    with pytest.raises(DaemonUnreachableError) as info:
        await open_connection(timeout=5)
    assert "buildkitd.sock: connection refused" in info.value.reason
    assert len(info.value.tried) == 2


async def test_buildkit_host_is_used_without_fallback(clean_env: pytest.MonkeyPatch, sockdir: Path) -> None:
    async with grpc_server(sockdir / "buildkitd.sock", FakeControl()):
        clean_env.setenv("BUILDKIT_HOST", f"unix://{sockdir}/other.sock")
        with pytest.raises(DaemonUnreachableError) as info:
            await open_connection(timeout=5)
        assert info.value.tried == [f"unix://{sockdir}/other.sock"]
        clean_env.setenv("BUILDKIT_HOST", f"unix://{sockdir}/buildkitd.sock")
        async with await open_connection(timeout=5) as conn:
            assert conn.tried == [f"unix://{sockdir}/buildkitd.sock"]
    clean_env.setenv("BUILDKIT_HOST", "buildkitd:1234")
    with pytest.raises(AddressError, match=r"from \$BUILDKIT_HOST"):
        await open_connection(timeout=5)


async def test_docker_host_not_unix(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCKER_HOST", "tcp://10.0.0.1:2376")
    with pytest.raises(AddressError, match="not a unix:// socket"):
        await open_connection("docker://", timeout=5)
    with pytest.raises(DaemonUnreachableError) as info:
        await open_connection(timeout=5)
    assert info.value.tried[-1] == "docker://"
    assert "DOCKER_HOST='tcp://10.0.0.1:2376' is not a unix:// socket" in info.value.reason


# --------------------------------------------------------------------------------------------
# Real buildkitd


def _failing_exec_definition() -> Any:
    """An LLB graph with one exec on an empty rootfs: it fails in the daemon."""

    def digest(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    ex = bytes(
        pb.Op(
            exec=pb.ExecOp(
                meta=pb.Meta(args=["/bin/false"], cwd="/"),
                mounts=[pb.Mount(input=-1, dest="/", output=0)],
                network=pb.NetMode.NONE,
            ),
            platform=pb.Platform(os="linux", architecture="amd64"),
            constraints=pb.WorkerConstraints(),
        )
    )
    last = bytes(pb.Op(inputs=[pb.Input(digest=digest(ex), index=0)]))
    metadata = {digest(ex): pb.OpMetadata(caps={"exec.meta.base": True, "exec.mount.bind": True})}
    return pb.Definition(def_=[ex, last], metadata=metadata)


@pytest.mark.daemon
async def test_buildkitd_unix(buildkit_daemon: BuildkitDaemon) -> None:
    conn = await open_connection(buildkit_daemon.address, timeout=10)
    try:
        assert conn.address == buildkit_daemon.address
        assert not conn.is_moby
        assert conn.docker_api_version is None
        assert conn.docker_socket is None
        reply = await control.ControlStub(conn.channel).list_workers(control.ListWorkersRequest(), timeout=10)
        assert [w.id for w in reply.record] == [w.id for w in conn.workers]
        assert reply.record[0].id != "moby"
        assert reply.record[0].platforms
    finally:
        await conn.close()


@pytest.mark.daemon
async def test_buildkitd_solve_error_details(buildkit_daemon: BuildkitDaemon) -> None:
    async with await open_connection(buildkit_daemon.address, timeout=10) as conn:
        request = control.SolveRequest(ref=secrets.token_hex(12), definition=_failing_exec_definition())
        with pytest.raises(GRPCError) as info:
            await control.ControlStub(conn.channel).solve(request, timeout=60)
        out = translate_grpc_error(info.value, method="Solve", address=conn.address)
        assert isinstance(out, SolveError)
        assert out.vertex is not None
        assert out.vertex.startswith("sha256:")
        assert out.exit_code is not None
        assert "did not complete successfully" in out.message
        # Stack traces and the rest stay reachable through the GRPCError.
        assert any(d.type_url == TYPE_STACK for d in error_details(info.value))


@pytest.mark.daemon
async def test_buildkitd_connection_closed_mid_stream(buildkit_daemon: BuildkitDaemon) -> None:
    conn = await open_connection(buildkit_daemon.address, timeout=10)
    try:
        async with asyncio.timeout(10):
            # A history stream without EarlyExit stays open; its initial metadata proves the
            # daemon has the call, so closing now is mid-call, not before it.
            async with conn.channel.request(
                "/moby.buildkit.v1.Control/ListenBuildHistory",
                Cardinality.UNARY_STREAM,
                control.BuildHistoryRequest,
                control.BuildHistoryEvent,
            ) as stream:
                await stream.send_message(control.BuildHistoryRequest(), end=True)
                await stream.recv_initial_metadata()
                await conn.close()
                with pytest.raises(StreamTerminatedError) as info:
                    await stream.recv_message()
    finally:
        await conn.close()
    out = translate_grpc_error(info.value, method="ListenBuildHistory", address=conn.address)
    assert isinstance(out, ConnectionLostError)
    assert out.address == buildkit_daemon.address


# --------------------------------------------------------------------------------------------
# TCP + TLS with a buildkitd of our own


@dataclass
class TLSDaemon:
    address: str
    certs: Path

    def config(self, *, ca: str = "ca.pem", client: bool = True, server_name: str | None = None) -> TLSConfig:
        return TLSConfig(
            ca_cert=str(self.certs / ca),
            cert=str(self.certs / "client.pem") if client else None,
            key=str(self.certs / "client.key") if client else None,
            server_name=server_name,
        )


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(d: Path) -> None:
    """A CA, a server cert (SAN 127.0.0.1 and buildkitd.test), a client cert, and a second,
    unrelated CA ("other-ca.pem") for the wrong-CA case."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=llblib-async test {ca}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d,
        )  # fmt: skip
    exts = {
        "server": "subjectAltName=IP:127.0.0.1,DNS:buildkitd.test\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, ext in exts.items():
        (d / f"{name}.ext").write_text(
            ext + "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n"
        )
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d,
        )  # fmt: skip


def _free_tcp_port() -> int:
    # The port is released before buildkitd binds it; a collision makes the daemon fail to
    # start with a clear error rather than a wrong test result.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def tls_buildkitd() -> Iterator[TLSDaemon]:
    if shutil.which("openssl") is None:
        # Fail, not skip, like the plugin's fixtures: a green run must mean these ran.
        pytest.fail("missing test prerequisite: the openssl CLI (apt-get install -y openssl)", pytrace=False)
    certs = Path(tempfile.mkdtemp(prefix="llbt-tls-"))
    try:
        make_certs(certs)
        port = _free_tcp_port()
        args = ["--addr", f"tcp://127.0.0.1:{port}"]
        for flag, name in (
            ("--tlscacert", "ca.pem"),
            ("--tlscert", "server.pem"),
            ("--tlskey", "server.key"),
        ):
            args += [flag, str(certs / name)]
        daemon = BuildkitDaemon.start(extra_args=args)
        try:
            yield TLSDaemon(address=f"tcp://127.0.0.1:{port}", certs=certs)
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(certs, ignore_errors=True)


@pytest.mark.daemon
async def test_tls_connect_with_client_cert(tls_buildkitd: TLSDaemon) -> None:
    for server_name in (None, "buildkitd.test"):
        conn = await open_connection(tls_buildkitd.address, tls=tls_buildkitd.config(server_name=server_name))
        try:
            assert conn.address == tls_buildkitd.address
            assert not conn.is_moby
            reply = await control.ControlStub(conn.channel).list_workers(
                control.ListWorkersRequest(), timeout=10
            )
            assert reply.record
        finally:
            await conn.close()


@pytest.mark.daemon
async def test_tls_wrong_ca(tls_buildkitd: TLSDaemon) -> None:
    msg = await expect_unreachable(tls_buildkitd.address, tls=tls_buildkitd.config(ca="other-ca.pem"))
    assert "TLS certificate verification failed" in msg


@pytest.mark.daemon
async def test_tls_wrong_server_name(tls_buildkitd: TLSDaemon) -> None:
    msg = await expect_unreachable(tls_buildkitd.address, tls=tls_buildkitd.config(server_name="other.test"))
    assert "TLS certificate verification failed" in msg


@pytest.mark.daemon
async def test_tls_without_client_cert(tls_buildkitd: TLSDaemon) -> None:
    msg = await expect_unreachable(tls_buildkitd.address, tls=tls_buildkitd.config(client=False))
    assert "client certificate" in msg


@pytest.mark.daemon
async def test_plaintext_to_tls_port(tls_buildkitd: TLSDaemon) -> None:
    msg = await expect_unreachable(tls_buildkitd.address)
    assert "does it need TLS" in msg


# --------------------------------------------------------------------------------------------
# Docker daemon (embedded BuildKit)


def _docker_socket(dockerd: DockerDaemon) -> str:
    assert dockerd.host.startswith("unix://")
    return dockerd.host[len("unix://") :]


@pytest.mark.docker
async def test_docker_unix(buildkit_dockerd: DockerDaemon) -> None:
    path = _docker_socket(buildkit_dockerd)
    conn = await open_connection(f"docker+unix://{path}", timeout=10)
    try:
        assert conn.address == f"docker+unix://{path}"
        assert conn.is_moby
        assert conn.docker_socket == path
        assert conn.docker_api_version is not None
        assert re.fullmatch(r"1\.[0-9]+", conn.docker_api_version)
        assert conn.docker_api_version == buildkit_dockerd.api_version
        stub = control.ControlStub(conn.channel)
        reply = await stub.list_workers(control.ListWorkersRequest(), timeout=10)
        assert [w.id for w in reply.record] == ["moby"]
        # Docker 20.10's BuildKit predates Info (newer engines answer it).
        try:
            await stub.info(control.InfoRequest(), timeout=10)
        except GRPCError as err:
            out = translate_grpc_error(err, method="Info", address=conn.address)
            assert isinstance(out, DaemonError)
            assert out.status == "UNIMPLEMENTED"
        await stub.disk_usage(control.DiskUsageRequest(), timeout=10)
    finally:
        await conn.close()


@pytest.mark.docker
async def test_docker_from_docker_host(buildkit_dockerd: DockerDaemon, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCKER_HOST", buildkit_dockerd.host)
    async with await open_connection("docker://", timeout=10) as conn:
        assert conn.address == f"docker+unix://{_docker_socket(buildkit_dockerd)}"
        assert conn.is_moby
    # And as the last default candidate, after the (missing) buildkitd socket.
    async with await open_connection(timeout=10) as conn:
        assert conn.is_moby
        assert conn.tried == [f"unix://{wire_address.DEFAULT_BUILDKITD_SOCKET}", conn.address]


@pytest.mark.docker
async def test_docker_hijack_real(buildkit_dockerd: DockerDaemon) -> None:
    sock = await docker_hijack(_docker_socket(buildkit_dockerd), "/grpc", timeout=10)
    sock.close()
    with pytest.raises(DaemonUnreachableError, match="404"):
        await docker_hijack(_docker_socket(buildkit_dockerd), "/no-such-endpoint", timeout=10)


@pytest.mark.docker
async def test_docker_solve_error(buildkit_dockerd: DockerDaemon) -> None:
    async with await open_connection(f"docker+unix://{_docker_socket(buildkit_dockerd)}", timeout=10) as conn:
        request = control.SolveRequest(ref=secrets.token_hex(12), definition=_failing_exec_definition())
        with pytest.raises(GRPCError) as info:
            await control.ControlStub(conn.channel).solve(request, timeout=60)
        out = translate_grpc_error(info.value, method="Solve", address=conn.address)
        assert isinstance(out, SolveError)
        assert out.exit_code is not None

"""The session tunnel, FileSync and FileSend.

In-process tests run the session server over a unix socket with a grpclib client
playing the daemon (health checks, DiffCopy in both directions, backpressure with a
stalled peer, shutdown, peer death). The ``daemon`` tests go through a real buildkitd
(``buildkit_address`` fixture from :mod:`llblib_async.testing.plugin`): a local
directory is sent with FileSync and comes back through FileSend (local and tar
exporters) and is compared byte for byte and mode for mode.

Every wait is bounded with ``anyio.fail_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import stat
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from llblib_async._fsutil import wire
from llblib_async._fsutil.receive import ReceiveStats, receive_tree
from llblib_async._fsutil.send import send_tree
from llblib_async._pb import pb
from llblib_async._pb.grpc.health import v1 as health
from llblib_async._pb.moby.buildkit import v1 as control
from llblib_async._pb.moby.filesync.v1 import BytesMessage
from llblib_async._tunnel.handle import SessionHandle
from llblib_async._tunnel.headers import session_headers
from llblib_async._tunnel.outbound import OutboundBuffer
from llblib_async._tunnel.server import serve_session
from llblib_async._tunnel.transports import open_control_session
from llblib_async._wire.messages import RawMessage
from llblib_async._wire.pipes import StreamPipe
from llblib_async.attachables import Attachable
from llblib_async.attachables.filesend import DirectoryTarget, FileSendProvider, FileTarget, StreamTarget
from llblib_async.attachables.filesync import FileSyncProvider
from llblib_async.errors import ConnectionLostError

IS_ROOT = os.geteuid() == 0
FILESYNC = "/moby.filesync.v1.FileSync/DiffCopy"
FILESEND = "/moby.filesync.v1.FileSend/DiffCopy"


# --------------------------------------------------------------------------- trees


def _write(root: Path, rel: str, data: bytes | str = b"x", mode: int = 0o644) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    p.chmod(mode)
    return p


def make_tree(root: Path, *, big: int = 300_000) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _write(root, "a/b", "in a")
    _write(root, "a.b", "dot")
    _write(root, "a-b", "dash")
    _write(root, "exe.sh", "#!/bin/sh\necho hi\n", 0o755)
    _write(root, "ro", "read only", 0o444)
    _write(root, "suid", "s", 0o4755)
    _write(root, "sgid", "g", 0o2711)
    _write(root, "empty.txt", b"")
    _write(root, "deep/er/still/file.go", "package x\n")
    _write(root, "big.bin", os.urandom(big))
    _write(root, "é ü.txt", "utf8 name")
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    (root / "private").mkdir(mode=0o700)
    _write(root, "private/secret", "s", 0o600)
    (root / "emptydir").mkdir()
    os.link(root / "a.b", root / "hardlink")
    os.symlink("a.b", root / "ln-rel")
    os.symlink("/etc/passwd", root / "ln-abs-out")
    os.symlink("../../outside", root / "ln-rel-out")
    os.symlink("deep", root / "ln-dir")
    os.mkfifo(root / "fifo")
    if IS_ROOT:
        os.mknod(root / "chardev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    for i, p in enumerate(sorted(root.rglob("*"), key=lambda x: len(x.parts), reverse=True)):
        t = 1_600_000_000_123_456_789 + i * 1_000_000_007
        os.utime(p, ns=(t, t), follow_symlinks=False)


def snapshot(root: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    first: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            e: dict[str, Any] = {"mode": oct(st.st_mode), "mtime": st.st_mtime_ns}
            if stat.S_ISREG(st.st_mode):
                e["sha"] = hashlib.sha256(p.read_bytes()).hexdigest()
                e["inode_of"] = first.setdefault((st.st_dev, st.st_ino), rel)
            elif stat.S_ISLNK(st.st_mode):
                e["link"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode):
                e["rdev"] = st.st_rdev
            out[rel] = e
    return out


# --------------------------------------------------------------------------- in-process "daemon"


class GatedPipe(StreamPipe):
    """A StreamPipe whose sending can be stalled, to play a daemon that stops reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, data: bytes) -> None:
        await self.gate.wait()
        await super().send(data)


@asynccontextmanager
async def loopback(
    tmp_path: Path,
    attachables: Sequence[Attachable],
    pipe: Callable[[asyncio.StreamReader, asyncio.StreamWriter], StreamPipe] = StreamPipe,
    **tuning: Any,
) -> AsyncIterator[tuple[Channel, SessionHandle, StreamPipe]]:
    """Serve a session on a unix socket; a grpclib Channel is the daemon's HTTP/2 client."""
    path = str(tmp_path / "session.sock")
    accepted_send, accepted = anyio.create_memory_object_stream[
        tuple[asyncio.StreamReader, asyncio.StreamWriter]
    ](1)
    server = await asyncio.start_unix_server(lambda r, w: accepted_send.send_nowait((r, w)), path)
    channel = Channel(path=path)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(channel.__connect__)  # grpclib connects lazily otherwise
                reader, writer = await accepted.receive()
        p = pipe(reader, writer)
        async with serve_session(p, attachables, session_id="loopback", label="loopback", **tuning) as handle:
            yield channel, handle, p
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
        accepted_send.close()
        accepted.close()


def client_conn(stream: Any) -> wire.GrpcPacketConn:
    """The daemon's end of a DiffCopy call as a :class:`wire.PacketConn`.

    The adapter serializes sends: the sender's walker and workers share the stream,
    and unsynchronized ``send_message`` calls interleave frames (that is exactly what
    corrupted a stream here before the lock).
    """
    return wire.GrpcPacketConn(stream)


def _raw_call(channel: Channel, method: str, metadata: Sequence[tuple[str, str]]) -> Any:
    return channel.request(method, Cardinality.STREAM_STREAM, RawMessage, RawMessage, metadata=list(metadata))


async def test_session_headers() -> None:
    md = session_headers("sid", methods=["/a/B", "/c/D"], shared_key="", name="")
    assert md == [
        ("x-docker-expose-session-uuid", "sid"),
        ("x-docker-expose-session-grpc-method", "/a/B"),
        ("x-docker-expose-session-grpc-method", "/c/D"),
    ]
    md = session_headers("sid", methods=[], shared_key="clé", name="n", health_check_ms=1000)
    assert ("x-docker-expose-session-sharedkey", "cl%C3%A9") in md
    assert ("x-docker-expose-session-sharedkey-encoded", "1") in md
    assert ("x-docker-expose-session-name", "n") in md
    assert ("x-buildkit-session-health-custom-timeout", "1000") in md


async def test_outbound_buffer_watermarks() -> None:
    events: list[str] = []

    class Proto(asyncio.Protocol):
        def pause_writing(self) -> None:
            events.append("pause")

        def resume_writing(self) -> None:
            events.append("resume")

    buf = OutboundBuffer(high_water=100, low_water=40, label="t")
    buf.set_protocol(Proto())
    for _ in range(5):
        buf.write(b"x" * 30)  # 150 queued: above 100 -> one pause
    assert events == ["pause"]
    assert buf.paused.is_set()
    assert await buf.next_chunk(64) == b"x" * 64  # 86 left: still paused
    assert events == ["pause"]
    assert len(await buf.next_chunk(50) or b"") == 50  # 36 left <= 40: resume
    assert events == ["pause", "resume"]
    buf.close()
    assert await buf.next_chunk(1000) == b"x" * 36  # drained after close ...
    assert await buf.next_chunk(1000) is None  # ... then end of stream
    buf.write(b"late")  # ignored once closed
    assert await buf.next_chunk(1000) is None


async def test_loopback_health_and_unimplemented(tmp_path: Path) -> None:
    async with loopback(tmp_path, []) as (channel, handle, _):
        with anyio.fail_after(10):
            resp = await health.HealthStub(channel).check(health.HealthCheckRequest())
            assert resp.status == health.HealthCheckResponseServingStatus.SERVING
            assert handle.health_checks == 1
            # Methods we don't serve answer a well-formed UNIMPLEMENTED (with
            # content-type: grpc-go would otherwise see Unknown), which the daemon
            # reads as "not provided".
            async with _raw_call(channel, "/moby.buildkit.secrets.v1.Secrets/GetSecret", []) as s:
                await s.send_message(RawMessage(b""), end=True)
                with pytest.raises(GRPCError) as exc:
                    await s.recv_message()
            # (grpclib's client checks content-type like grpc-go: without it this
            # would be UNKNOWN "Missing content-type header".)
            assert exc.value.status == Status.UNIMPLEMENTED
    assert handle.methods == ("/grpc.health.v1.Health/Check",)
    assert handle.closed.is_set()
    assert handle.exception is None


async def test_loopback_filesync_with_patterns(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src)
    provider = FileSyncProvider({"ctx": src})
    async with loopback(tmp_path, [provider]) as (channel, _, _):
        with anyio.fail_after(30):
            md = [("dir-name", "ctx"), ("exclude-patterns", "deep"), ("exclude-patterns", "*.bin")]
            async with _raw_call(channel, FILESYNC, md) as s:
                await s.send_request()
                await receive_tree(client_conn(s), dest)
                await s.end()
            async with _raw_call(channel, FILESYNC, [("dir-name", "nope")]) as s:
                await s.send_request()
                await s.end()
                with pytest.raises(GRPCError, match='no access allowed to dir "nope"') as exc:
                    await s.recv_message()
                assert exc.value.status == Status.NOT_FOUND
    expected = {k: v for k, v in snapshot(src).items() if not k.startswith("deep") and k != "big.bin"}
    assert snapshot(dest) == expected
    (done,) = provider.transfers
    assert done.requests == sum(1 for v in expected.values() if "sha" in v) - 1  # hardlink: no REQ


async def test_loopback_filesend_targets(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src)
    received: list[bytes] = []
    closed: list[Mapping[str, str]] = []

    class Sink:
        def __init__(self, md: Mapping[str, str]) -> None:
            self.md = md

        async def send(self, item: bytes) -> None:
            received.append(item)

        async def aclose(self) -> None:
            closed.append(self.md)

    async def open_sink(md: Mapping[str, str]) -> Sink:
        return Sink(md)

    async def exists(md: Mapping[str, str]) -> None:
        return None

    provider = FileSendProvider(
        {
            0: DirectoryTarget(dest),
            1: FileTarget(tmp_path / "out" / "x.tar"),
            2: StreamTarget(open_sink),
            3: StreamTarget(exists),
        }
    )
    payload = [os.urandom(100_000), b"", os.urandom(3)]

    async def send_bytes(exporter: int, md: Sequence[tuple[str, str]] = ()) -> None:
        async with _raw_call(
            channel, FILESEND, [("buildkit-attachable-exporter-id", str(exporter)), *md]
        ) as s:
            await s.send_request()
            for chunk in payload:
                await s.send_message(RawMessage(bytes(BytesMessage(data=chunk))))
            await s.end()
            assert await s.recv_message() is None  # returns only after the sink was flushed

    async with loopback(tmp_path, [provider]) as (channel, _, _):
        with anyio.fail_after(30):
            async with _raw_call(channel, FILESEND, [("buildkit-attachable-exporter-id", "0")]) as s:
                await s.send_request()
                await send_tree(client_conn(s), src)
                await s.end()
            await send_bytes(1)
            assert (tmp_path / "out" / "x.tar").read_bytes() == b"".join(payload)
            await send_bytes(2, [("exporter-md-image.name", "a"), ("exporter-md-containerimage.digest", "d")])
            assert b"".join(received) == b"".join(payload)
            assert closed == [{"image.name": "a", "containerimage.digest": "d"}]
            with pytest.raises(GRPCError) as exc:
                await send_bytes(3)
            assert exc.value.status == Status.ALREADY_EXISTS
            with pytest.raises(GRPCError, match="exporter 9 not found"):
                await send_bytes(9)
    assert snapshot(dest) == snapshot(src)
    result = provider.results[0]
    assert isinstance(result, ReceiveStats)
    assert result.complete


async def test_backpressure_bounds_buffered_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    size = 8 * 1024 * 1024
    _write(src, "big", os.urandom(size))
    high, low = 256 * 1024, 64 * 1024
    async with loopback(
        tmp_path, [FileSyncProvider({"ctx": src})], pipe=GatedPipe, high_water=high, low_water=low
    ) as (channel, handle, pipe):
        assert isinstance(pipe, GatedPipe)
        transport = handle._outbound
        assert transport is not None
        with anyio.fail_after(60):
            async with _raw_call(channel, FILESYNC, [("dir-name", "ctx")]) as s:
                await s.send_request()
                conn = client_conn(s)
                stats = []
                while (p := wire.decode(await conn.recv() or b"")).stat is not None:
                    stats.append(p.stat)
                pipe.gate.clear()  # the daemon stops reading ...
                await conn.send(wire.encode_req(0))
                await transport.paused.wait()  # ... so the sender gets paused
                assert handle.pauses == 1
                # Bounded by the high-water mark plus one write of the HTTP/2 layer.
                assert handle.max_buffered <= high + 64 * 1024
                pipe.gate.set()
                data = bytearray()
                while (p := wire.decode(await conn.recv() or b"")).data:
                    data += p.data
                await conn.send(wire.FIN)
                assert wire.decode(await conn.recv() or b"").type == wire.PT.PACKET_FIN
                await s.end()
    assert bytes(data) == (src / "big").read_bytes()
    assert handle.max_buffered <= high + 64 * 1024


def _our_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t not in before and t is not asyncio.current_task()]


async def test_shutdown_mid_transfer_leaves_no_tasks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, "big", os.urandom(4 * 1024 * 1024))
    before = asyncio.all_tasks()
    with anyio.fail_after(60):  # a hang guard
        async with loopback(tmp_path, [FileSyncProvider({"ctx": src})], close_timeout=2) as (channel, h, _):
            await health.HealthStub(channel).check(health.HealthCheckRequest())
            s = _raw_call(channel, FILESYNC, [("dir-name", "ctx")])
            await s.__aenter__()
            await s.send_request()
            await s.recv_message()  # the transfer is running; leave without finishing it
        with contextlib.suppress(Exception):  # the daemon side of the call is dead too
            await s.__aexit__(None, None, None)
    assert h.closed.is_set()
    assert _our_tasks(before) == []


async def test_guard_passes_results_and_errors_through(tmp_path: Path) -> None:
    async with loopback(tmp_path, []) as (_, handle, _):
        with anyio.fail_after(10):

            async def ok() -> int:
                return 42

            async def fails() -> None:
                raise KeyError("boom")

            assert await handle.guard(ok) == 42
            with pytest.raises(KeyError, match="boom"):  # not wrapped in an ExceptionGroup
                await handle.guard(fails)


async def test_peer_death_is_reported(tmp_path: Path) -> None:
    async with loopback(tmp_path, []) as (channel, handle, _):
        with anyio.fail_after(10):
            await health.HealthStub(channel).check(health.HealthCheckRequest())

            async def pending_build() -> None:
                await anyio.sleep_forever()

            async def kill_daemon_side() -> None:
                channel.close()  # the daemon's connection drops

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_daemon_side)
                with pytest.raises(ConnectionLostError, match="closed the session"):
                    await handle.guard(pending_build)
            await handle.wait_closed()
    assert isinstance(handle.exception, ConnectionLostError)


# --------------------------------------------------------------------------- real daemon


def _definition(sources: Sequence[tuple[str, str]], session_id: str) -> pb.Definition:
    """LLB: one ``local://name`` source (the first) ... plus a terminal op (Go-identical bytes)."""
    name, unique = sources[0]
    src = pb.Op(
        source=pb.SourceOp(
            identifier=f"local://{name}",
            attrs={"local.session": session_id, "local.unique": unique},
        ),
        constraints=pb.WorkerConstraints(),
    )
    src_bytes = bytes(src)
    digest = "sha256:" + hashlib.sha256(src_bytes).hexdigest()
    terminal = bytes(pb.Op(inputs=[pb.Input(digest=digest, index=0)]))
    return pb.Definition(def_=[src_bytes, terminal])


def _solve_request(session_id: str, name: str, exporters: Sequence[str]) -> control.SolveRequest:
    req = control.SolveRequest(
        ref=uuid.uuid4().hex,
        definition=_definition([(name, uuid.uuid4().hex)], session_id),
        session=session_id,
        exporters=[control.Exporter(type=t, attrs={}) for t in exporters],
    )
    if exporters:
        req.exporter_deprecated = exporters[0]
    return req


@asynccontextmanager
async def daemon_channel(address: str) -> AsyncIterator[Channel]:
    assert address.startswith("unix://"), address
    channel = Channel(path=address.removeprefix("unix://"))
    try:
        yield channel
    finally:
        channel.close()


def _tar_view(path: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            data = b""
            if m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                data = f.read()
            out[m.name.rstrip("/")] = (m.type, m.mode, hashlib.sha256(data).hexdigest(), m.linkname, m.mtime)
    return out


def _expected_tar_view(src: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    first: dict[int, str] = {}
    for rel, e in sorted(snapshot(src).items()):
        st = os.lstat(src / rel)
        mode = stat.S_IMODE(st.st_mode)
        mtime = (st.st_mtime_ns + 500_000_000) // 1_000_000_000  # Go's tar rounds to seconds
        if stat.S_ISDIR(st.st_mode):
            out[rel] = (tarfile.DIRTYPE, mode, hashlib.sha256(b"").hexdigest(), "", mtime)
        elif stat.S_ISLNK(st.st_mode):
            out[rel] = (tarfile.SYMTYPE, mode, hashlib.sha256(b"").hexdigest(), e["link"], mtime)
        elif stat.S_ISFIFO(st.st_mode):
            out[rel] = (tarfile.FIFOTYPE, mode, hashlib.sha256(b"").hexdigest(), "", mtime)
        elif stat.S_ISCHR(st.st_mode):
            out[rel] = (tarfile.CHRTYPE, mode, hashlib.sha256(b"").hexdigest(), "", mtime)
        elif stat.S_ISSOCK(st.st_mode):  # sent as an empty regular file (Go's behaviour)
            out[rel] = (tarfile.REGTYPE, mode, hashlib.sha256(b"").hexdigest(), "", mtime)
        elif st.st_ino in first:
            out[rel] = (tarfile.LNKTYPE, mode, hashlib.sha256(b"").hexdigest(), first[st.st_ino], mtime)
        else:
            first[st.st_ino] = rel
            out[rel] = (tarfile.REGTYPE, mode, e["sha"], "", mtime)
    return out


@pytest.mark.daemon
async def test_filesync_to_local_and_tar_exporters(buildkit_address: str, tmp_path: Path) -> None:
    src, dest, tar = tmp_path / "src", tmp_path / "dest", tmp_path / "out.tar"
    make_tree(src)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))  # sent as an empty regular file, like Go does
    sock.close()
    session_id = uuid.uuid4().hex
    sync = FileSyncProvider({"ctx": src})
    send = FileSendProvider({0: DirectoryTarget(dest), 1: FileTarget(tar)})
    async with daemon_channel(buildkit_address) as channel:
        with anyio.fail_after(120):
            async with open_control_session(
                channel,
                session_id=session_id,
                shared_key=uuid.uuid4().hex,  # no reuse of an earlier test's copy of "ctx"
                attachables=[sync, send],
                address=buildkit_address,
            ) as handle:
                assert set(handle.methods) == {"/grpc.health.v1.Health/Check", FILESYNC, FILESEND}
                await control.ControlStub(channel).solve(_solve_request(session_id, "ctx", ["local", "tar"]))
            assert handle.exception is None
    expected = snapshot(src)
    sock_perm = stat.S_IMODE(os.lstat(src / "sock").st_mode)
    expected["sock"].update(
        mode=oct(stat.S_IFREG | sock_perm), sha=hashlib.sha256(b"").hexdigest(), inode_of="sock"
    )
    got = snapshot(dest)
    assert got == expected
    assert sync.transfers[0].entries == len(expected)
    assert not send.errors
    tar_expected = _expected_tar_view(src)
    tar_expected["sock"] = (
        tarfile.REGTYPE,
        sock_perm,
        hashlib.sha256(b"").hexdigest(),
        "",
        tar_expected["sock"][4],
    )
    assert _tar_view(tar) == tar_expected


@pytest.mark.daemon
async def test_unknown_local_name_fails_the_solve(buildkit_address: str, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    session_id = uuid.uuid4().hex
    async with daemon_channel(buildkit_address) as channel:
        with anyio.fail_after(60):
            async with open_control_session(
                channel,
                session_id=session_id,
                shared_key=uuid.uuid4().hex,  # no reuse of an earlier test's copy of "ctx"
                attachables=[FileSyncProvider({"ctx": tmp_path / "ctx"})],
            ):
                with pytest.raises(GRPCError, match=r'no access allowed to dir \\?"nope'):
                    await control.ControlStub(channel).solve(_solve_request(session_id, "nope", []))


@pytest.mark.daemon
async def test_health_checks_are_answered(buildkit_address: str) -> None:
    session_id = uuid.uuid4().hex
    async with daemon_channel(buildkit_address) as channel:
        with anyio.fail_after(30):
            # health_check_ms=1000: the daemon checks every second (and gives up after
            # one failure), instead of every 5 s.
            async with open_control_session(
                channel, session_id=session_id, shared_key=uuid.uuid4().hex, health_check_ms=1000
            ) as handle:
                await handle.wait_health_check()
                await handle.wait_health_check()
                assert handle.health_checks >= 2
            assert handle.exception is None


@pytest.mark.daemon
async def test_clean_shutdown_leaves_no_tasks(buildkit_address: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    session_id = uuid.uuid4().hex
    async with daemon_channel(buildkit_address) as channel:
        stub = control.ControlStub(channel)
        await stub.list_workers(control.ListWorkersRequest())  # the channel's own tasks exist now
        before = asyncio.all_tasks()
        with anyio.fail_after(60):  # a hang guard
            async with open_control_session(
                channel,
                session_id=session_id,
                shared_key=uuid.uuid4().hex,  # no reuse of an earlier test's copy of "ctx"
                attachables=[FileSyncProvider({"ctx": src})],
            ) as handle:
                await stub.solve(_solve_request(session_id, "ctx", []))
        assert handle.closed.is_set()
        assert handle.exception is None
        assert _our_tasks(before) == []


@pytest.mark.daemon
async def test_two_concurrent_solves_share_one_session(buildkit_address: str, tmp_path: Path) -> None:
    one, two, dest = tmp_path / "one", tmp_path / "two", tmp_path / "dest"
    make_tree(one)
    _write(two, "big", os.urandom(2 * 1024 * 1024))
    _write(two, "small", "s")
    session_id = uuid.uuid4().hex
    sync = FileSyncProvider({"one": one, "two": two})
    # FileSend targets are keyed by exporter index per session, so only one of the
    # concurrent solves exports to the client.
    send = FileSendProvider({0: DirectoryTarget(dest)})
    async with daemon_channel(buildkit_address) as channel:
        stub = control.ControlStub(channel)
        with anyio.fail_after(120):
            async with (
                open_control_session(
                    channel, session_id=session_id, shared_key=uuid.uuid4().hex, attachables=[sync, send]
                ) as handle,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(stub.solve, _solve_request(session_id, "one", []))
                tg.start_soon(stub.solve, _solve_request(session_id, "two", ["local"]))
            assert handle.exception is None
    assert sorted(t.name for t in sync.transfers) == ["one", "two"]
    assert snapshot(dest) == snapshot(two)


@pytest.mark.daemon
async def test_many_small_files_roundtrip(buildkit_address: str, tmp_path: Path) -> None:
    """3000 files up and back down through the real daemon's fsutil (Go) peers.

    (20k files once deadlocked the receiver on flow control; the deterministic
    regression test for that is in test_fsutil_unit.py.)
    """
    src, dest = tmp_path / "src", tmp_path / "dest"
    for i in range(30):
        d = src / f"d{i:03}"
        d.mkdir(parents=True)
        for j in range(100):
            (d / f"f{j}").write_bytes(b"%d-%d" % (i, j) if j % 10 else b"")
    session_id = uuid.uuid4().hex
    sync = FileSyncProvider({"ctx": src})
    send = FileSendProvider({0: DirectoryTarget(dest)})
    async with daemon_channel(buildkit_address) as channel:
        with anyio.fail_after(300):
            async with open_control_session(
                channel, session_id=session_id, shared_key=uuid.uuid4().hex, attachables=[sync, send]
            ):
                await control.ControlStub(channel).solve(_solve_request(session_id, "ctx", ["local"]))
    result = send.results[0]
    assert isinstance(result, ReceiveStats)
    assert (result.entries, result.files) == (3030, 3000)
    assert snapshot(dest) == snapshot(src)


@pytest.mark.daemon
async def test_daemon_death_closes_the_session(buildkit_fresh_daemon: Any) -> None:
    session_id = uuid.uuid4().hex
    async with daemon_channel(buildkit_fresh_daemon.address) as channel:
        with anyio.fail_after(60):
            async with open_control_session(
                channel,
                session_id=session_id,
                shared_key=uuid.uuid4().hex,  # no reuse of an earlier test's copy of "ctx"
                address=buildkit_fresh_daemon.address,
            ) as handle:
                await control.ControlStub(channel).list_workers(control.ListWorkersRequest())

                async def never_finishes() -> None:
                    await anyio.sleep_forever()

                async def kill() -> None:
                    await anyio.to_thread.run_sync(buildkit_fresh_daemon.kill)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(kill)
                    with pytest.raises(ConnectionLostError):
                        await handle.guard(never_finishes)
                assert handle.closed.is_set()
    assert isinstance(handle.exception, ConnectionLostError)
